// A private, disposable containerd (+ kuasard) for the demo, the e2e tests and the benchmarks.
//
// Everything lives in one private directory (/run/kdev-XXXXXX): containerd's root, state and
// sockets, the CNI configuration and IPAM data, kuasard's configuration and state, and the logs.
// Host-wide objects carry the directory's suffix in their names (bridge kbrXXXXXX, cgroup
// kuasar-kdev-XXXXXX), so stop() can find and remove all of them, and so can a later start
// when a test run was killed before it could clean up.
import { spawn } from 'node:child_process';
import { chmodSync, copyFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import { createConnection } from 'node:net';
import { basename, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse as parseToml } from 'smol-toml';
import type { PodSandboxConfig } from '../api/cri/runtime/v1/api_pb.js';
import { adminSocketPath, enabledKinds, loadConfig } from '../config/config.js';
import { sandboxerName } from '../config/containerd.js';
import { CriClient } from '../cri/client.js';
import {
  BASELINE_HANDLER,
  renderCniConfig,
  renderContainerdConfig,
  renderKuasardConfig,
  renderStreamingHandlers,
  streamingHandlerName,
} from './config.js';
import { Daemon, tailOfFile } from './daemon.js';
import { BUSYBOX_IMAGE, buildImages, DEFAULT_IMAGE_CACHE, importImages, PAUSE_IMAGE, WASM_TESTS_IMAGE } from './images.js';
import { ENV_DIR_PREFIX, environmentNames, environmentPaths, type EnvironmentNames, type EnvironmentPaths } from './layout.js';
import { cgroupHierarchies } from './mounts.js';
import { chooseSubnet, createBridge, type Subnet } from './network.js';
import type { LeakScope } from './ownership.js';
import { podSandboxConfig, removeAllPods, type PodOptions } from './pods.js';
import { readProcess } from './processes.js';
import { sweepStaleEnvironments, teardownEnvironment, writeRecord, type EnvironmentRecord } from './teardown.js';
import { KUASARD_ENTRY, KUASARD_NODE_FLAGS } from '../install/kuasard-node.js';

export interface EnvironmentOptions {
  /** Start kuasard too (default true); the baseline-only tests do without it. */
  kuasard?: boolean;
  /** kuasard's configuration; defaults to every registered kind, state under the private directory (renderKuasardConfig). */
  kuasardConfig?: (paths: EnvironmentPaths) => string;
  /** Where built images are cached (default /var/cache/kuasar-ts/images). */
  imageCacheDir?: string;
  /** How long each daemon may take to come up (default 20 s). */
  startTimeoutMs?: number;
  /** How long a CRI call of the environment's client may take (default the client's: 2 min, kubelet's default too). */
  criCallTimeoutMs?: number;
  /** Told about each step, for a demo's narration or a test's debugging. */
  onProgress?: (message: string) => void;
  /**
   * Also register `kuasar-<kind>-streaming` for every kuasar kind: the same sandboxer with
   * io_type = "streaming" (stdio over the sandbox's task socket). Default false.
   */
  streamingHandlers?: boolean;
  /**
   * Writes containerd's configuration file in place of the environment's own (the install test:
   * containerd's defaults with the environment's paths, then `kuasar install`). Called once
   * kuasard's configuration is written; the file must keep containerd's root, state and sockets
   * in `paths` and register the kinds kuasard serves.
   */
  writeContainerdConfig?: (paths: EnvironmentPaths) => Promise<void>;
  /**
   * Run kuasard from its compiled modules (dist/src/cli/kuasard.js) instead of its bundle, as
   * installed (KUASARD_ENTRY): the test of which modules kuasard loads needs them apart.
   */
  kuasardModules?: boolean;
}

export interface Environment {
  readonly paths: EnvironmentPaths;
  readonly names: EnvironmentNames;
  readonly subnet: Subnet;
  /** Cgroup parent for pods (`linux.cgroup_parent`): a directory in every hierarchy, removed by stop(). */
  readonly cgroupParent: string;
  readonly cri: CriClient;
  readonly images: { readonly busybox: string; readonly pause: string; readonly wasmTests: string };
  /**
   * CRI runtime handlers: containerd's own runc, kuasar's per kind (`kuasar-runc`...), and with
   * `streamingHandlers` the streaming-io ones per kind (`kuasar-runc-streaming`...; else empty).
   */
  readonly handlers: {
    readonly baseline: string;
    readonly kuasar: Readonly<Record<string, string>>;
    readonly kuasarStreaming: Readonly<Record<string, string>>;
  };
  /** Controller socket of each kind kuasard serves. */
  readonly kuasarSockets: Readonly<Record<string, string>>;
  /** What belongs to this environment, for diffHost(); daemonPids follows restarts. */
  readonly scope: LeakScope;
  /** A PodSandboxConfig placed in this environment (cgroup parent, log directory). */
  podConfig(options: PodOptions): PodSandboxConfig;
  /** The last lines of the daemons' logs. */
  logs(lines?: number): { containerd: string; kuasard: string };
  /**
   * Each daemon that has died while the environment runs, told by its exit and the last lines of
   * its log; empty while they all run. Calls to a dead kuasard do not fail, they hang until their
   * deadline (the fd keeper holds its task sockets open for the next run): this says why.
   */
  daemonsDown(): string[];
  /**
   * Stops kuasard (SIGTERM, or SIGKILL with `crash`) and starts it again with the same
   * configuration; containers stay.
   */
  restartKuasard(options?: { crash?: boolean }): Promise<void>;
  /** Stops containerd (SIGTERM) and starts it again with the same configuration and state. */
  restartContainerd(): Promise<void>;
  /** Removes every pod, stops the daemons and removes everything the environment made. */
  stop(): Promise<void>;
}

const DEFAULT_START_TIMEOUT_MS = 20_000;
const CLI_DIR = resolve(dirname(fileURLToPath(import.meta.url)), '../cli');

export async function startEnvironment(options: EnvironmentOptions = {}): Promise<Environment> {
  const progress = options.onProgress ?? (() => undefined);
  // Leftovers of killed runs are removed here; failing at it must not stop a new environment.
  try {
    const swept = await sweepStaleEnvironments();
    if (swept.length > 0) progress(`removed environments left by dead runs: ${swept.join(', ')}`);
  } catch (err) {
    progress(`could not remove every environment left by dead runs: ${(err as Error).message}`);
  }
  progress('building images');
  const images = await buildImages(options.imageCacheDir ?? DEFAULT_IMAGE_CACHE);

  const dir = await mkdtemp(ENV_DIR_PREFIX);
  chmodSync(dir, 0o700);
  const paths = environmentPaths(dir);
  const record: EnvironmentRecord = { owner: selfRef(), daemons: {} };
  writeRecord(paths.record, record);
  progress(`environment in ${dir}`);

  const daemons: { containerd?: Daemon; kuasard?: Daemon } = {};
  let cri: CriClient | undefined;
  try {
    const names = environmentNames(dir);
    const subnet = await chooseSubnet();
    await createBridge(names.bridge, subnet);
    const cgroupParent = `/${names.cgroupName}`;
    makeCgroupParent(names.cgroupName);
    for (const d of [paths.cniConfDir, paths.cniIpamDir, paths.podLogDir, paths.optDir]) mkdirSync(d, { recursive: true, mode: 0o700 });
    writeFileSync(join(paths.cniConfDir, '10-kuasar.conflist'), renderCniConfig(paths, names, subnet));

    const withKuasard = options.kuasard ?? true;
    const { kuasarSockets, adminSocket } = withKuasard
      ? await writeKuasardConfig(paths, options.kuasardConfig ?? renderKuasardConfig)
      : { kuasarSockets: {}, adminSocket: undefined };
    const streamingKinds = withKuasard && options.streamingHandlers ? Object.keys(kuasarSockets) : [];
    if (options.writeContainerdConfig) await options.writeContainerdConfig(paths);
    else await writeContainerdConfig(paths, withKuasard, streamingKinds);

    const timeoutMs = options.startTimeoutMs ?? DEFAULT_START_TIMEOUT_MS;
    cri = new CriClient(paths.containerdSocket, options.criCallTimeoutMs === undefined ? {} : { callTimeoutMs: options.criCallTimeoutMs });
    const client = cri;
    const startContainerd = async (): Promise<Daemon> => {
      progress('starting containerd');
      const containerd = await Daemon.start('containerd', 'containerd', ['--config', paths.containerdConfig], paths.containerdLog);
      daemons.containerd = containerd;
      record.daemons.containerd = refOf(containerd);
      writeRecord(paths.record, record);
      await containerd.waitUntilReady('a CRI Status with RuntimeReady and NetworkReady', () => criReady(client), timeoutMs);
      return containerd;
    };
    const firstContainerd = await startContainerd();

    progress('importing images');
    await importImages(images, paths.containerdSocket);
    // CRI learns about imported images from containerd's events, a moment after the import.
    const refs = images.map((image) => image.ref);
    await firstContainerd.waitUntilReady(`CRI ImageStatus finding ${refs.join(', ')}`, () => criHasImages(client, refs), timeoutMs);

    const startKuasard = async () => {
      progress('starting kuasard');
      const kuasard = await Daemon.start(
        'kuasard',
        process.execPath,
        [...KUASARD_NODE_FLAGS, options.kuasardModules ? join(CLI_DIR, 'kuasard.js') : KUASARD_ENTRY, '--config', paths.kuasardConfig],
        paths.kuasardLog,
      );
      daemons.kuasard = kuasard;
      record.daemons.kuasard = refOf(kuasard);
      writeRecord(paths.record, record);
      // The admin socket listens last: once it does, kuasard has made every socket of its start.
      const sockets = [...Object.values(kuasarSockets), ...(adminSocket ? [adminSocket] : [])];
      await kuasard.waitUntilReady(
        `listening on ${sockets.join(', ')}`,
        async () => (await Promise.all(sockets.map(canConnect))).every(Boolean),
        timeoutMs,
      );
    };
    if (withKuasard) await startKuasard();

    const scope: LeakScope = {
      dir,
      cgroupName: names.cgroupName,
      bridge: names.bridge,
      get daemonPids() {
        return [daemons.containerd, daemons.kuasard].filter((d): d is Daemon => d?.running === true).map((d) => d.pid);
      },
    };
    let stopped = false;
    const env: Environment = {
      paths,
      names,
      subnet,
      cgroupParent,
      cri: client,
      images: { busybox: BUSYBOX_IMAGE, pause: PAUSE_IMAGE, wasmTests: WASM_TESTS_IMAGE },
      handlers: {
        baseline: BASELINE_HANDLER,
        kuasar: Object.fromEntries(Object.keys(kuasarSockets).map((kind) => [kind, sandboxerName(kind)])),
        kuasarStreaming: Object.fromEntries(streamingKinds.map((kind) => [kind, streamingHandlerName(kind)])),
      },
      kuasarSockets,
      scope,
      podConfig: (pod) => podSandboxConfig({ cgroupParent, podLogDir: paths.podLogDir }, pod),
      logs: (lines = 50) => ({ containerd: tailOfFile(paths.containerdLog, lines), kuasard: tailOfFile(paths.kuasardLog, lines) }),
      daemonsDown: () => (stopped ? [] : [daemons.containerd, daemons.kuasard].flatMap((daemon) => daemon?.exitReport() ?? [])),
      async restartContainerd() {
        await daemons.containerd?.stop();
        await startContainerd();
      },
      async restartKuasard({ crash = false } = {}) {
        if (!withKuasard) throw new Error('this environment was started without kuasard');
        await (crash ? daemons.kuasard?.crash() : daemons.kuasard?.stop());
        await startKuasard();
      },
      async stop() {
        if (stopped) return;
        stopped = true;
        progress('stopping');
        const problems = await removeAllPods(client).catch((err: Error) => [`listing pods: ${err.message}`]);
        await shutdown(dir, daemons, client);
        if (problems.length > 0) progress(`pods not removed cleanly: ${problems.join('; ')}`);
      },
    };
    return env;
  } catch (err) {
    await shutdown(dir, daemons, cri).catch((cleanupErr: Error) => progress(cleanupErr.message));
    throw err;
  }
}

/** Stops the daemons we started (they are our children), then removes everything else. */
async function shutdown(dir: string, daemons: { containerd?: Daemon; kuasard?: Daemon }, cri: CriClient | undefined): Promise<void> {
  cri?.close();
  await daemons.kuasard?.stop();
  await daemons.containerd?.stop();
  keepLogs(dir);
  await teardownEnvironment(dir);
}

/**
 * With KDEV_KEEP_LOGS=<dir>, the daemons' logs outlive the environment (in <dir>/<environment>/),
 * so that a failure seen only in a long run can be read afterwards.
 */
function keepLogs(dir: string): void {
  const keepDir = process.env['KDEV_KEEP_LOGS'];
  if (!keepDir) return;
  const target = join(keepDir, basename(dir));
  mkdirSync(target, { recursive: true });
  for (const log of ['containerd.log', 'kuasard.log']) {
    if (existsSync(join(dir, log))) copyFileSync(join(dir, log), join(target, log));
  }
}

/**
 * Writes kuasard's configuration and returns the controller socket of every kind it enables, as
 * kuasard itself reads them (an invalid configuration fails here, naming the bad key).
 */
/** Writes kuasard's configuration; the controller socket of each kind it may serve, and its admin socket. */
async function writeKuasardConfig(
  paths: EnvironmentPaths,
  render: (paths: EnvironmentPaths) => string,
): Promise<{ kuasarSockets: Record<string, string>; adminSocket: string }> {
  writeFileSync(paths.kuasardConfig, render(paths), { mode: 0o600 });
  const config = await loadConfig(paths.kuasardConfig);
  return {
    kuasarSockets: Object.fromEntries(enabledKinds(config).map((kind) => [kind.name, kind.listen])),
    adminSocket: adminSocketPath(config),
  };
}

/** containerd's configuration, with the tables `kuasar config containerd` prints when kuasard runs. */
async function writeContainerdConfig(paths: EnvironmentPaths, withKuasard: boolean, streamingKinds: readonly string[]): Promise<void> {
  let text = renderContainerdConfig(paths);
  if (withKuasard) text += `\n# --- printed by \`kuasar config containerd\` ---\n${await kuasarContainerdSnippet(paths.kuasardConfig)}`;
  if (streamingKinds.length > 0) text += `\n# --- streaming-io handlers of the environment ---\n${renderStreamingHandlers(streamingKinds)}`;
  try {
    parseToml(text);
  } catch (err) {
    throw new Error(
      `the containerd configuration is not valid TOML (does kuasar's snippet define a table twice?): ${(err as Error).message}`,
    );
  }
  writeFileSync(paths.containerdConfig, text, { mode: 0o600 });
}

async function criHasImages(cri: CriClient, refs: readonly string[]): Promise<boolean> {
  const statuses = await Promise.all(refs.map((ref) => cri.image.imageStatus({ image: { image: ref } })));
  return statuses.every((status) => status.image !== undefined);
}

async function criReady(cri: CriClient): Promise<boolean> {
  await cri.runtime.version({}, { timeoutMs: 2_000 });
  const { status } = await cri.runtime.status({}, { timeoutMs: 2_000 });
  const ready = (type: string) => status?.conditions.some((c) => c.type === type && c.status) ?? false;
  return ready('RuntimeReady') && ready('NetworkReady');
}

/** The tables kuasar's own CLI prints for containerd, so the environment tests that command too. */
async function kuasarContainerdSnippet(kuasardConfig: string): Promise<string> {
  const cli = join(CLI_DIR, 'kuasar.js');
  const child = spawn(process.execPath, [cli, 'config', 'containerd', '--config', kuasardConfig], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const code = await new Promise<number | null>((resolveExit, reject) => {
    child.once('error', reject);
    child.once('close', resolveExit);
  });
  if (code !== 0) throw new Error(`\`kuasar config containerd --config ${kuasardConfig}\` failed (exit ${code}): ${stderr.trim()}`);
  return stdout;
}

/**
 * Makes the pods' cgroup parent in every hierarchy, so that the leak checks' "before" already
 * has it (runc would make it on the first container and never remove it). A new cpuset cgroup
 * starts with no CPUs or memory nodes: it gets its parent's.
 */
function makeCgroupParent(name: string): void {
  for (const root of cgroupHierarchies()) {
    const path = join(root, name);
    mkdirSync(path, { recursive: true });
    for (const file of ['cpuset.cpus', 'cpuset.mems']) {
      if (existsSync(join(root, file))) writeFileSync(join(path, file), readFileSync(join(root, file)));
    }
  }
}

function canConnect(path: string): Promise<boolean> {
  return new Promise((resolveConnect) => {
    const socket = createConnection(path);
    socket.once('connect', () => {
      socket.destroy();
      resolveConnect(true);
    });
    socket.once('error', () => resolveConnect(false));
  });
}

function selfRef() {
  return { pid: process.pid, startTime: readProcess(process.pid)?.startTime ?? '' };
}

function refOf(daemon: Daemon) {
  return { pid: daemon.pid, startTime: daemon.startTime };
}
