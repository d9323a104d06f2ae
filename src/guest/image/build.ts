// `kuasar image build`: the whole guest image, from the host's own node, runc and busybox, the
// compiled agent and Debian's kernel package. Everything is built in a work directory next to the
// output and moved into place at the end, so the output is never a half-built image; an image
// whose manifest names the same inputs is left alone.
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, mkdtemp, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { bundleAgent } from './agent-bundle.js';
import { buildInitramfs } from './initramfs.js';
import { INIT_SCRIPT } from './init-script.js';
import { DEFAULT_CACHE_DIR, extractElfKernel, fetchKernelPackage, unpackKernel } from './kernel.js';
import { checkImageDir, IMAGE_FILES, type ImageManifest, imagePaths } from './layout.js';
import { GUEST_MODULES, readModuleTree, resolveModuleFiles } from './modules.js';
import { packRootfs, stageRootfs } from './rootfs.js';
import { isStaticBinary } from './shared-libs.js';

/** Bumped whenever the builder would lay out the same inputs differently. */
export const BUILDER_VERSION = '3';

/** Built by `npm run build:native`: dist/native/kuasar-idle (this module is dist/src/guest/image/build.js). */
const BUILT_PID_HOLDER = fileURLToPath(new URL('../../../native/kuasar-idle', import.meta.url));

export const BUILD_STAGES = ['kernel package', 'agent bundle', 'inputs', 'kernel', 'initramfs', 'root image', 'manifest'] as const;
export type BuildStage = (typeof BUILD_STAGES)[number];

export interface StageEvent {
  stage: BuildStage;
  state: 'begin' | 'end';
  /** What the stage found or made, on 'end'. */
  detail?: string;
  /** How long the stage took, on 'end'. */
  durationMs?: number;
}

export interface BuildOptions {
  outDir: string;
  /** The compiled agent's entry point (dist/src/guest/agent/main.js). */
  agentEntry: string;
  /** Where the kernel package is downloaded to and kept. */
  cacheDir?: string;
  /** Build even when the image there is up to date. */
  force?: boolean;
  node?: string;
  runc?: string;
  busybox?: string;
  /** The static program that holds a pod's shared PID namespace in the guest (native/kuasar-idle.c). */
  pidHolder?: string;
  /** The time stamp of every file in the images (seconds); defaults to SOURCE_DATE_EPOCH, else 0. */
  sourceDateEpoch?: number;
  onStage?: (event: StageEvent) => void;
}

export interface BuildResult {
  outDir: string;
  manifest: ImageManifest;
  /** The image there was up to date: nothing was built. */
  upToDate: boolean;
  /** The kernel package was downloaded (not taken from the cache). */
  downloaded: boolean;
  durationMs: number;
}

async function sha256File(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

const sha256 = (data: string | Buffer): string => createHash('sha256').update(data).digest('hex');

/** The koffi package directory this builder itself resolves (the version the agent was built against). */
function koffiDir(): string {
  // koffi's main module (index.js) sits at the top of its package.
  return dirname(fileURLToPath(import.meta.resolve('koffi')));
}

async function readManifest(path: string): Promise<ImageManifest | undefined> {
  try {
    return JSON.parse(await readFile(path, 'utf8')) as ImageManifest;
  } catch {
    return undefined;
  }
}

function epochFromEnvironment(): number {
  const value = process.env.SOURCE_DATE_EPOCH;
  if (value === undefined) return 0;
  const epoch = Number(value);
  if (!Number.isInteger(epoch) || epoch < 0) throw new Error(`SOURCE_DATE_EPOCH=${value} is not a time in seconds`);
  return epoch;
}

/** Moves the finished image directory `built` to `outDir`, replacing what was there. */
async function moveIntoPlace(built: string, outDir: string, workDir: string): Promise<void> {
  const old = join(workDir, 'replaced');
  const hadOne = await rename(outDir, old).then(
    () => true,
    (err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') return false;
      throw err;
    },
  );
  try {
    await rename(built, outDir);
  } catch (err) {
    // The work directory goes after this: the image that was there comes back first.
    if (hadOne) await rename(old, outDir);
    throw err;
  }
  if (hadOne) await rm(old, { recursive: true, force: true });
}

export async function buildImage(options: BuildOptions): Promise<BuildResult> {
  const began = Date.now();
  const report = options.onStage ?? (() => undefined);
  const stage = async <T>(name: BuildStage, work: () => Promise<T>, detail?: (value: T) => string): Promise<T> => {
    report({ stage: name, state: 'begin' });
    const stageBegan = Date.now();
    const value = await work();
    report({ stage: name, state: 'end', detail: detail?.(value), durationMs: Date.now() - stageBegan });
    return value;
  };
  const node = options.node ?? process.execPath;
  const runc = options.runc ?? '/usr/sbin/runc';
  const busybox = options.busybox ?? '/bin/busybox';
  const pidHolder = options.pidHolder ?? BUILT_PID_HOLDER;
  const epoch = options.sourceDateEpoch ?? epochFromEnvironment();
  const paths = imagePaths(options.outDir);

  const kernelPackage = await stage(
    'kernel package',
    () => fetchKernelPackage(options.cacheDir ?? DEFAULT_CACHE_DIR),
    (p) => `${p.name} ${p.version}${p.downloaded ? ' (downloaded)' : ' (cached)'}`,
  );
  const agentBundle = await stage(
    'agent bundle',
    () => bundleAgent(options.agentEntry),
    (b) => `${(b.length / 1024).toFixed(1)} KiB`,
  );
  const inputsKey = await stage(
    'inputs',
    async () => {
      if (!(await isStaticBinary(busybox))) throw new Error(`${busybox} is not statically linked (install busybox-static)`);
      if (!(await isStaticBinary(pidHolder))) throw new Error(`${pidHolder} is missing or not static (npm run build:native)`);
      const koffiPackage = await readFile(join(koffiDir(), 'package.json'), 'utf8');
      return sha256(
        JSON.stringify({
          builder: BUILDER_VERSION,
          kernel: `${kernelPackage.name}_${kernelPackage.version}`,
          modules: GUEST_MODULES,
          init: sha256(INIT_SCRIPT),
          node: await sha256File(node),
          runc: await sha256File(runc),
          busybox: await sha256File(busybox),
          pidHolder: await sha256File(pidHolder),
          koffi: (JSON.parse(koffiPackage) as { version: string }).version,
          agent: sha256(agentBundle),
          epoch,
        }),
      );
    },
    (key) => key.slice(0, 12),
  );

  const existing = await readManifest(paths.manifest);
  if (!options.force && existing?.inputsKey === inputsKey && (await checkImageDir(options.outDir)).complete) {
    return {
      outDir: options.outDir,
      manifest: existing,
      upToDate: true,
      downloaded: kernelPackage.downloaded,
      durationMs: Date.now() - began,
    };
  }

  await mkdir(dirname(options.outDir), { recursive: true });
  // Next to the output, so the final rename stays on one filesystem.
  const workDir = await mkdtemp(join(dirname(options.outDir), `.${basename(options.outDir)}.build-`));
  try {
    const built = join(workDir, 'image');
    await mkdir(built);
    const out = imagePaths(built);

    const { kernel, modules } = await stage(
      'kernel',
      async () => {
        const kernel = await unpackKernel(kernelPackage.debFile, join(workDir, 'kernel-package'));
        await extractElfKernel(kernel.vmlinuz, out.kernel);
        const modules = await resolveModuleFiles(await readModuleTree(kernel.modulesDir), GUEST_MODULES);
        return { kernel, modules };
      },
      (k) => `${k.kernel.release}, ${k.modules.length} modules`,
    );
    await stage(
      'initramfs',
      async () => {
        await writeFile(out.initrd, await buildInitramfs({ busybox, modules: modules.map((m) => m.file), mtime: epoch }));
      },
      () => modules.map((m) => m.name).join(' '),
    );
    await rm(join(workDir, 'kernel-package'), { recursive: true, force: true });
    await stage(
      'root image',
      async () => {
        const root = join(workDir, 'rootfs');
        await mkdir(root);
        await stageRootfs({ node, runc, busybox, pidHolder, agentBundle, koffiDir: koffiDir() }, root);
        await packRootfs(root, out.rootfs, epoch);
        return (await stat(out.rootfs)).size;
      },
      (size) => `squashfs, ${(size / (1024 * 1024)).toFixed(1)} MiB`,
    );
    const manifest = await stage('manifest', async () => {
      const files: ImageManifest['files'] = {};
      for (const name of [IMAGE_FILES.kernel, IMAGE_FILES.initrd, IMAGE_FILES.rootfs]) {
        const path = join(built, name);
        files[name] = { size: (await stat(path)).size, sha256: await sha256File(path) };
      }
      const manifest: ImageManifest = {
        kernelRelease: kernel.release,
        kernelPackage: `${kernelPackage.name}_${kernelPackage.version}`,
        rootfsType: 'squashfs',
        files,
        inputsKey,
        builtAt: new Date().toISOString(),
        builderVersion: BUILDER_VERSION,
      };
      await writeFile(out.manifest, `${JSON.stringify(manifest, null, 2)}\n`);
      return manifest;
    });
    await moveIntoPlace(built, options.outDir, workDir);
    return { outDir: options.outDir, manifest, upToDate: false, downloaded: kernelPackage.downloaded, durationMs: Date.now() - began };
  } finally {
    await rm(workDir, { recursive: true, force: true });
  }
}
