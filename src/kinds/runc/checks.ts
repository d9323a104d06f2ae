// Whether the runc kind can run here: its OCI runtime answers, and (in `kuasar doctor`) runs a
// tiny container for real: new PID, IPC, UTS, mount and network namespaces and a cgroup, the
// host's /usr bound read-only as its only files, a shell that checks it is PID 1 under the
// container's hostname. Everything it makes is removed again, the cgroup included.
import { randomBytes } from 'node:crypto';
import { lstat, mkdir, readlink, rm, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { type CheckContext, type CheckResult, fail, findExecutable, ok, runForCheck, skipped } from '../../kind-api/checks.js';
import { removeCgroup } from '../../linux/cgroups.js';
import { parseVersion } from '../../oci/outputs.js';

const VERSION_TIMEOUT_MS = 5_000;
/** A container that has not run its shell by then counts as hanging (runc takes ~150 ms). */
const CONTAINER_TIMEOUT_MS = 15_000;
const HOSTNAME = 'kuasar-doctor';
/** Top-level directories the container needs for /bin/sh: links are copied, directories bound read-only. */
const HOST_DIRS = ['usr', 'bin', 'lib', 'lib64', 'sbin'];

const runtimeFix = (runtime: string) =>
  `install runc (apt-get install runc), or set [kinds.runc] oci_runtime to the runtime's path (now "${runtime}")`;

export async function runcChecks(ociRuntime: string, context: CheckContext): Promise<CheckResult[]> {
  const binary = await findExecutable(ociRuntime);
  if (!binary) {
    return [
      fail('oci runtime', `${ociRuntime}: not found${ociRuntime.includes('/') ? '' : ' on PATH'}`, runtimeFix(ociRuntime)),
      skipped('tiny container', 'no OCI runtime to run it'),
    ];
  }
  // At start the kind itself asks the runtime's version next (kind.ts): one spawn less.
  if (context.depth === 'start') return [ok('oci runtime', binary), skipped('tiny container', 'run by `kuasar doctor` only')];
  const answer = await runForCheck(binary, ['--version'], VERSION_TIMEOUT_MS);
  if (!answer.ok) {
    return [
      fail('oci runtime', `${binary} --version: ${answer.why}`, runtimeFix(ociRuntime)),
      skipped('tiny container', 'the OCI runtime does not answer'),
    ];
  }
  const version = parseVersion(answer.stdout);
  const runtime = ok('oci runtime', `${version.name} ${version.version} (${binary})${version.spec ? `, OCI spec ${version.spec}` : ''}`);
  return [runtime, await tinyContainer(binary, context.scratchDir)];
}

async function tinyContainer(binary: string, scratchDir: string): Promise<CheckResult> {
  const name = 'tiny container';
  const id = `kuasar-doctor-${randomBytes(6).toString('hex')}`;
  const root = join(scratchDir, 'runc-root');
  const bundle = join(scratchDir, 'runc-bundle');
  const cgroupsPath = `/${id}`;
  let result: CheckResult;
  try {
    await writeBundle(bundle, cgroupsPath);
    const started = performance.now();
    const run = await runForCheck(binary, ['--root', root, 'run', '--bundle', bundle, id], CONTAINER_TIMEOUT_MS);
    const ms = Math.round(performance.now() - started);
    result = run.ok
      ? ok(name, `ran in new pid, ipc, uts, mount and network namespaces and a cgroup in ${ms} ms`)
      : fail(
          name,
          `${binary} run: ${run.why}`,
          "see the runtime's error: doctor ran it as kuasard does (as root, new namespaces, a cgroup)",
        );
  } finally {
    // The container may be left (a time-out): it goes, then whatever it left behind.
    await runForCheck(binary, ['--root', root, 'delete', '--force', id], VERSION_TIMEOUT_MS);
    await rm(bundle, { recursive: true, force: true });
    await rm(root, { recursive: true, force: true });
  }
  const leftCgroup = await removeCgroup(cgroupsPath).then(
    () => undefined,
    (err: Error) => err.message,
  );
  if (leftCgroup) return fail(name, `its cgroup was left behind: ${leftCgroup}`, `remove the cgroup ${cgroupsPath} by hand`);
  return result;
}

async function writeBundle(bundle: string, cgroupsPath: string): Promise<void> {
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
    ociVersion: '1.0.2',
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
