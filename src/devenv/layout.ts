// Where an environment keeps its things, and the names it gives to host-wide objects (cgroup,
// bridge, CNI network). Everything is derived from the private directory's random suffix, so
// an environment found on disk (say, left behind by a killed test run) can be torn down from
// its directory alone, and leak checks can tell one environment's objects from another's.
import { join } from 'node:path';

/**
 * Private directories are `/run/kdev-XXXXXX`. Short on purpose: unix socket paths hold at most
 * 107 bytes, and kuasard puts `<dir>/k/<kind>/<64-hex sandbox id>/task.sock` under it (98 bytes
 * for the runc kind with this prefix).
 */
export const ENV_DIR_PARENT = '/run';
export const ENV_DIR_PREFIX = `${ENV_DIR_PARENT}/kdev-`;
/** Cgroup directory (one per hierarchy) that pods of an environment are placed under. */
export const ENV_CGROUP_PREFIX = 'kuasar-kdev-';
/** Linux bridge of an environment's CNI network (interface names hold at most 15 bytes). */
export const ENV_BRIDGE_PREFIX = 'kbr';
export const ENV_NETWORK_PREFIX = 'kuasar-kdev-';

export interface EnvironmentPaths {
  /** The private directory holding everything below. */
  dir: string;
  /** JSON record of what the environment started, for teardown by another process. */
  record: string;
  containerdConfig: string;
  containerdRoot: string;
  containerdState: string;
  containerdSocket: string;
  containerdTtrpcSocket: string;
  containerdLog: string;
  /** runc's state directory for containerd's own runc handler. */
  runcRoot: string;
  cniConfDir: string;
  cniIpamDir: string;
  /** containerd's `opt` plugin directory, kept private rather than /opt/containerd. */
  optDir: string;
  /** Where tests put their pods' CRI log directories. */
  podLogDir: string;
  kuasardConfig: string;
  kuasardLog: string;
  kuasarState: string;
}

export interface EnvironmentNames {
  /** Cgroup directory name, relative to each hierarchy's root. */
  cgroupName: string;
  bridge: string;
  network: string;
}

export function environmentPaths(dir: string): EnvironmentPaths {
  return {
    dir,
    record: join(dir, 'devenv.json'),
    containerdConfig: join(dir, 'containerd.toml'),
    containerdRoot: join(dir, 'root'),
    containerdState: join(dir, 'state'),
    containerdSocket: join(dir, 'containerd.sock'),
    containerdTtrpcSocket: join(dir, 'containerd.sock.ttrpc'),
    containerdLog: join(dir, 'containerd.log'),
    runcRoot: join(dir, 'runc'),
    cniConfDir: join(dir, 'cni'),
    cniIpamDir: join(dir, 'cni-ipam'),
    optDir: join(dir, 'opt'),
    podLogDir: join(dir, 'pod-logs'),
    kuasardConfig: join(dir, 'kuasard.toml'),
    kuasardLog: join(dir, 'kuasard.log'),
    // Short: task sockets go 3 levels below it and a unix socket path has 107 bytes at most.
    kuasarState: join(dir, 'k'),
  };
}

/** The controller socket kuasard listens on for one sandbox kind. */
export function kuasarSocketPath(dir: string, kind: string): string {
  return join(dir, `kuasar-${kind}.sock`);
}

/** True for a path shaped like an environment's private directory (mkdtemp's 6 characters). */
export function isEnvironmentDir(dir: string): boolean {
  return dir.startsWith(ENV_DIR_PREFIX) && /^[A-Za-z0-9]{6}$/.test(dir.slice(ENV_DIR_PREFIX.length));
}

export function environmentNames(dir: string): EnvironmentNames {
  if (!isEnvironmentDir(dir)) throw new Error(`${dir} is not a development environment directory`);
  const suffix = dir.slice(ENV_DIR_PREFIX.length);
  return {
    cgroupName: `${ENV_CGROUP_PREFIX}${suffix}`,
    bridge: `${ENV_BRIDGE_PREFIX}${suffix}`,
    network: `${ENV_NETWORK_PREFIX}${suffix}`,
  };
}
