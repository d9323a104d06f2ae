// A tiny container run for real by an OCI runtime, as kuasard runs a pod's containers: as root,
// new PID, IPC, UTS, mount and network namespaces and a top-level cgroup, the host's /usr bound
// read-only as its only files, a shell that checks it is PID 1 under the container's hostname.
// `kuasar doctor` runs it to tell whether the runc kind can run here, and kuasard at start to
// tell whether crun can be its runtime (runtime-choice.ts). Everything it makes is removed
// again, the cgroup included.
import { randomBytes } from 'node:crypto';
import { lstat, mkdir, readlink, rm, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { runForCheck } from '../../kind-api/checks.js';
import { removeCgroup } from '../../linux/cgroups.js';
import type { RuntimeProfile } from '../../oci/profiles.js';

/** A container that has not run its shell by then counts as hanging (runc takes ~150 ms). */
const CONTAINER_TIMEOUT_MS = 15_000;
const DELETE_TIMEOUT_MS = 5_000;
const HOSTNAME = 'kuasar-doctor';
/** Top-level directories the container needs for /bin/sh: links are copied, directories bound read-only. */
const HOST_DIRS = ['usr', 'bin', 'lib', 'lib64', 'sbin'];
/** What the bundle says when the runtime's profile names no version of its own. */
const SPEC_VERSION = '1.0.2';

export type TinyContainerOutcome = { ok: true; ms: number } | { ok: false; why: string; fix: string };

/** Runs the tiny container with `binary` (through its profile's launcher) in `scratchDir`, and removes it. */
export async function runTinyContainer(binary: string, profile: RuntimeProfile, scratchDir: string): Promise<TinyContainerOutcome> {
  const id = `kuasar-doctor-${randomBytes(6).toString('hex')}`;
  const root = join(scratchDir, `${profile.name}-root`);
  const bundle = join(scratchDir, `${profile.name}-bundle`);
  const cgroupsPath = `/${id}`;
  const launcher = profile.launcher ?? [];
  const runtime = (args: string[], timeoutMs: number) =>
    runForCheck(
      launcher[0] ?? binary,
      [...launcher.slice(1), ...(launcher.length > 0 ? [binary] : []), '--root', root, ...args],
      timeoutMs,
    );
  let outcome: TinyContainerOutcome;
  try {
    await writeBundle(bundle, cgroupsPath, profile.specVersion ?? SPEC_VERSION);
    const started = performance.now();
    const run = await runtime(['run', '--bundle', bundle, id], CONTAINER_TIMEOUT_MS);
    outcome = run.ok
      ? { ok: true, ms: Math.round(performance.now() - started) }
      : {
          ok: false,
          why: `${binary} run: ${run.why}`,
          fix: "see the runtime's error: it ran as kuasard runs it (as root, new namespaces, a cgroup)",
        };
  } finally {
    // The container may be left (a time-out): it goes, then whatever it left behind.
    await runtime(['delete', '--force', id], DELETE_TIMEOUT_MS);
    await rm(bundle, { recursive: true, force: true });
    await rm(root, { recursive: true, force: true });
  }
  const leftCgroup = await removeCgroup(cgroupsPath).then(
    () => undefined,
    (err: Error) => err.message,
  );
  if (leftCgroup) return { ok: false, why: `its cgroup was left behind: ${leftCgroup}`, fix: `remove the cgroup ${cgroupsPath} by hand` };
  return outcome;
}

async function writeBundle(bundle: string, cgroupsPath: string, ociVersion: string): Promise<void> {
  const rootfs = join(bundle, 'rootfs');
  await mkdir(rootfs, { recursive: true, mode: 0o700 });
  const binds: object[] = [];
  for (const dir of HOST_DIRS) {
    const host = `/${dir}`;
    const info = await lstat(host).catch(() => undefined);
    if (info?.isSymbolicLink()) await symlink(await readlink(host), join(rootfs, dir));
    else if (info?.isDirectory())
      binds.push({ destination: host, type: 'bind', source: host, options: ['rbind', 'ro', 'nosuid', 'nodev'] });
  }
  const spec = {
    ociVersion,
    process: {
      user: { uid: 0, gid: 0 },
      // Fails unless the shell is PID 1 of its own namespace and sees the container's hostname.
      args: ['/bin/sh', '-c', `[ $$ = 1 ] && [ "$(cat /proc/sys/kernel/hostname)" = ${HOSTNAME} ]`],
      cwd: '/',
      env: ['PATH=/usr/bin:/bin'],
      noNewPrivileges: true,
    },
    root: { path: 'rootfs', readonly: true },
    hostname: HOSTNAME,
    mounts: [
      { destination: '/proc', type: 'proc', source: 'proc' },
      { destination: '/dev', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'mode=755', 'size=64k'] },
      ...binds,
    ],
    linux: {
      namespaces: ['pid', 'ipc', 'uts', 'mount', 'network'].map((type) => ({ type })),
      // Absolute: a top-level cgroup, as a pod's are, not one below whatever cgroup runs doctor.
      cgroupsPath,
    },
  };
  await writeFile(join(bundle, 'config.json'), JSON.stringify(spec));
}
