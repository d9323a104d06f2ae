// Container images for the development environment, built on this machine without any registry:
// an OCI layout made with umoci, tarred, cached, and imported into a containerd with `ctr`.
//
// A cached tar is named after a hash of everything it is made from (this recipe's version, the
// busybox binary, the C source and compiler of the pause program), so a cache hit is just "the
// file exists", and a changed input builds a new file. Builds happen in a private temporary
// directory and end with a rename, so parallel builders never see half a tar.
import { createHash } from 'node:crypto';
import { lutimes, mkdir, mkdtemp, readdir, readFile, rename, rm, stat, symlink, writeFile, chmod, copyFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { run } from './exec.js';

export const BUSYBOX_IMAGE = 'kuasar.local/busybox:latest';
export const PAUSE_IMAGE = 'kuasar.local/pause:latest';
/** The wasm kind's test modules: /<name>.wasm for every test/fixtures/wasm/<name>.wat, and /data. */
export const WASM_TESTS_IMAGE = 'kuasar.local/wasm-tests:latest';
export const DEFAULT_IMAGE_CACHE = '/var/cache/kuasar-ts/images';

/** Bump when the way images are made changes, so old cached tars are not reused. */
const RECIPE_VERSION = '1';
const BUSYBOX_BINARY = '/bin/busybox';
/** Every file in the images gets this mtime, so equal inputs give equal layers. */
const EPOCH = new Date(0);

export interface LocalImage {
  /** The reference CRI sees, e.g. kuasar.local/busybox:latest. */
  ref: string;
  /** The OCI archive (a tarred OCI layout whose only tag is the reference's tag). */
  tarPath: string;
}

interface Recipe {
  /** Short name, used for the cached file name. */
  name: string;
  ref: string;
  /** Everything the image is made from; its hash names the cached tar. */
  inputs(): Promise<Array<string | Buffer>>;
  /** Writes the image's files into an empty directory. */
  fillRootfs(rootfs: string, workDir: string): Promise<void>;
  /** `umoci config` flags for the image configuration. */
  configFlags: string[];
}

// The pause process of containerd's own runc handler (the benchmark baseline): it waits for a
// signal forever and reaps the children that the pod's PID namespace hands it. Its name is not
// `sleep` because CRI conformance tests look for processes with that name.
const PAUSE_SOURCE = `#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

static void reap(int sig) { (void)sig; while (waitpid(-1, 0, WNOHANG) > 0) {} }
static void quit(int sig) { (void)sig; _exit(0); }

int main(void) {
  struct sigaction sa = {0};
  sa.sa_handler = quit;
  sigaction(SIGINT, &sa, 0);
  sigaction(SIGTERM, &sa, 0);
  sa.sa_handler = reap;
  sa.sa_flags = SA_NOCLDSTOP | SA_RESTART;
  sigaction(SIGCHLD, &sa, 0);
  for (;;) pause();
}
`;

const PASSWD = 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n';
const GROUP = 'root:x:0:\nnogroup:x:65534:\n';
const PATH_ENV = 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

const busybox: Recipe = {
  name: 'busybox',
  ref: BUSYBOX_IMAGE,
  inputs: async () => [await readFile(BUSYBOX_BINARY)],
  async fillRootfs(rootfs) {
    await mkdir(join(rootfs, 'bin'), { recursive: true });
    await copyFile(BUSYBOX_BINARY, join(rootfs, 'bin/busybox'));
    await chmod(join(rootfs, 'bin/busybox'), 0o755);
    // `--list-full` names every applet with its usual directory (bin/sh, sbin/ip, ...). The
    // binary's own name is in that list: linking it to itself would make a loop.
    const applets = (await run(BUSYBOX_BINARY, ['--list-full'])).split('\n').filter((a) => a && a !== 'bin/busybox');
    for (const applet of applets) {
      await mkdir(dirname(join(rootfs, applet)), { recursive: true });
      await symlink('/bin/busybox', join(rootfs, applet));
    }
    await mkdir(join(rootfs, 'etc'));
    await writeFile(join(rootfs, 'etc/passwd'), PASSWD);
    await writeFile(join(rootfs, 'etc/group'), GROUP);
    await mkdir(join(rootfs, 'root'), { mode: 0o700 });
    await mkdir(join(rootfs, 'tmp'));
    await chmod(join(rootfs, 'tmp'), 0o1777);
  },
  configFlags: ['--config.cmd', 'sh', '--config.env', PATH_ENV],
};

const pause: Recipe = {
  name: 'pause',
  ref: PAUSE_IMAGE,
  inputs: async () => [PAUSE_SOURCE, await run('gcc', ['--version'])],
  async fillRootfs(rootfs, workDir) {
    const source = join(workDir, 'pause.c');
    await writeFile(source, PAUSE_SOURCE);
    await run('gcc', ['-static', '-Os', '-s', '-Wall', '-Werror', '-o', join(rootfs, 'pause'), source]);
  },
  configFlags: ['--config.entrypoint', '/pause'],
};

const WAT_DIR = resolve(dirname(fileURLToPath(import.meta.url)), '../../../test/fixtures/wasm');
/** A file in the wasm image, for the module that reads a file through its preopens. */
const WASM_MESSAGE = 'a file from the rootfs\n';

/** The sources of test/fixtures/wasm/<name>.wat for `names`, or for every fixture there. */
async function watSources(names?: readonly string[]): Promise<{ name: string; text: string }[]> {
  const chosen =
    names ??
    (await readdir(WAT_DIR))
      .filter((f) => f.endsWith('.wat'))
      .sort()
      .map((f) => f.slice(0, -'.wat'.length));
  return Promise.all(chosen.map(async (name) => ({ name, text: await readFile(join(WAT_DIR, `${name}.wat`), 'utf8') })));
}

/** Compiles test/fixtures/wasm/<name>.wat into <dir>/<name>.wasm for `names`, or for every fixture there. */
export async function writeWasmModules(dir: string, names?: readonly string[]): Promise<void> {
  // Loaded only here: wabt is a development dependency, and this module is reachable from the CLI.
  const { default: wabt } = await import('wabt');
  const compiler = await wabt();
  for (const source of await watSources(names)) {
    const parsed = compiler.parseWat(`${source.name}.wat`, source.text);
    try {
      await writeFile(join(dir, `${source.name}.wasm`), parsed.toBinary({}).buffer);
    } finally {
      parsed.destroy();
    }
  }
}

const wasmTests: Recipe = {
  name: 'wasm-tests',
  ref: WASM_TESTS_IMAGE,
  inputs: async () => [WASM_MESSAGE, ...(await watSources()).flatMap((s) => [s.name, s.text])],
  async fillRootfs(rootfs) {
    await writeWasmModules(rootfs);
    await mkdir(join(rootfs, 'data'));
    await writeFile(join(rootfs, 'data/message.txt'), WASM_MESSAGE);
  },
  configFlags: ['--config.cmd', '/hello.wasm'],
};

const RECIPES: readonly Recipe[] = [busybox, pause, wasmTests];

/** A local image's reference, by its short name (the name a kind's workloads give it). */
export function localImageRef(name: string): string {
  return recipeNamed(name).ref;
}

/** Writes the files of the local image `name` into the empty directory `dir`, as its snapshot would show them. */
export async function writeImageFiles(name: string, dir: string): Promise<void> {
  const recipe = recipeNamed(name);
  const workDir = await mkdtemp(join(tmpdir(), `kuasar-image-${recipe.name}-`));
  try {
    await recipe.fillRootfs(dir, workDir);
  } finally {
    await rm(workDir, { recursive: true, force: true });
  }
}

function recipeNamed(name: string): Recipe {
  const recipe = RECIPES.find((r) => r.name === name);
  if (!recipe) throw new Error(`no local image "${name}": the environment builds ${RECIPES.map((r) => r.name).join(', ')}`);
  return recipe;
}

/**
 * Builds (or finds in the cache) every image the environment needs: kuasar.local/busybox:latest,
 * kuasar.local/pause:latest and kuasar.local/wasm-tests:latest.
 */
export async function buildImages(cacheDir: string = DEFAULT_IMAGE_CACHE): Promise<LocalImage[]> {
  await mkdir(cacheDir, { recursive: true });
  const images: LocalImage[] = [];
  for (const recipe of RECIPES) images.push({ ref: recipe.ref, tarPath: await buildImage(recipe, cacheDir) });
  return images;
}

/** Imports image archives into containerd's `k8s.io` namespace (the one CRI uses), unpacked. */
export async function importImages(images: readonly LocalImage[], containerdSocket: string): Promise<void> {
  for (const image of images) {
    const { repo } = splitRef(image.ref);
    // An OCI archive's tags are bare ("latest"): ctr names each one <base-name>:<tag>, which is
    // why the layout is tagged with exactly the reference's tag. ctr unpacks for the default
    // snapshotter (overlayfs) unless told not to.
    await run('ctr', ['-a', containerdSocket, '-n', 'k8s.io', 'images', 'import', '--base-name', repo, image.tarPath]);
  }
}

export function splitRef(ref: string): { repo: string; tag: string } {
  const colon = ref.lastIndexOf(':');
  if (colon <= ref.lastIndexOf('/')) throw new Error(`image reference ${ref} has no tag`);
  return { repo: ref.slice(0, colon), tag: ref.slice(colon + 1) };
}

async function buildImage(recipe: Recipe, cacheDir: string): Promise<string> {
  const hash = createHash('sha256').update(RECIPE_VERSION).update(recipe.ref);
  for (const input of await recipe.inputs()) hash.update(input);
  const tarPath = join(cacheDir, `${recipe.name}-${hash.digest('hex').slice(0, 16)}.tar`);
  if (await exists(tarPath)) return tarPath;

  const workDir = await mkdtemp(join(cacheDir, `.build-${recipe.name}-`));
  try {
    const rootfs = join(workDir, 'rootfs');
    const layout = join(workDir, 'layout');
    const { tag } = splitRef(recipe.ref);
    const image = `${layout}:${tag}`;
    await mkdir(rootfs);
    await recipe.fillRootfs(rootfs, workDir);
    await setMtimes(rootfs, EPOCH);
    await run('umoci', ['init', '--layout', layout]);
    await run('umoci', ['new', '--image', image]);
    await run('umoci', ['insert', '--image', image, '--no-history', rootfs, '/']);
    await run('umoci', ['config', '--image', image, '--no-history', '--created', EPOCH.toISOString(), ...recipe.configFlags]);
    await run('umoci', ['gc', '--layout', layout]);
    const tmpTar = join(workDir, 'image.tar');
    await run('tar', ['--sort=name', '--mtime=@0', '--owner=0', '--group=0', '--numeric-owner', '-C', layout, '-cf', tmpTar, '.']);
    await rename(tmpTar, tarPath);
    await removeStale(cacheDir, recipe.name, tarPath);
  } finally {
    await rm(workDir, { recursive: true, force: true });
  }
  return tarPath;
}

/** Deletes cached tars of the same image made from older inputs. */
async function removeStale(cacheDir: string, name: string, keep: string): Promise<void> {
  for (const entry of await readdir(cacheDir)) {
    const path = join(cacheDir, entry);
    if (path !== keep && entry.startsWith(`${name}-`) && entry.endsWith('.tar')) await rm(path, { force: true });
  }
}

async function setMtimes(dir: string, time: Date): Promise<void> {
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) await setMtimes(path, time);
    await lutimes(path, time, time);
  }
  await lutimes(dir, time, time);
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}
