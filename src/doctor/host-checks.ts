// The checks of the host itself, whatever the kind: root, the kernel's namespaces, the cgroup
// layout and its controllers, and whether a process may lower its oom_score_adj (CRI asks -998
// for a pod's infrastructure and kubelet negative values for guaranteed pods). Quick: kuasard
// runs them at each start.
import { access, readFile } from 'node:fs/promises';
import { type CheckResult, fail, ok, runForCheck, warn } from '../kind-api/checks.js';
import { type CgroupLayout, hostCgroupLayout } from '../linux/cgroups.js';

/** The namespaces pods are made of (CRI's network namespace included), by their /proc/self/ns name. */
const NAMESPACES = ['mnt', 'uts', 'ipc', 'pid', 'net', 'cgroup'];
/** The controllers pod resources are set and read with. */
const CONTROLLERS = ['cpu', 'memory', 'pids'];
const OOM_SCORE_ADJ_TIMEOUT_MS = 5_000;
/** What CRI asks for a pod's infrastructure. */
const CRI_OOM_SCORE_ADJ = -998;

export async function rootCheck(): Promise<CheckResult> {
  const euid = process.geteuid?.();
  return euid === 0
    ? ok('root', 'running as root')
    : fail('root', `running as uid ${euid}: pods need root (namespaces, mounts, cgroups)`, 'run kuasard and kuasar doctor as root');
}

export async function namespacesCheck(): Promise<CheckResult> {
  const present = await Promise.all(
    NAMESPACES.map((ns) =>
      access(`/proc/self/ns/${ns}`).then(
        () => true,
        () => false,
      ),
    ),
  );
  const missing = NAMESPACES.filter((_, i) => !present[i]);
  if (missing.length > 0) {
    return fail(
      'namespaces',
      `the kernel has no ${missing.join(', ')} namespaces`,
      'boot a kernel built with them (CONFIG_NAMESPACES and each CONFIG_<TYPE>_NS)',
    );
  }
  return ok('namespaces', NAMESPACES.join(', '));
}

/** The layout as kuasar reads it, with the controllers a pod's resources need. */
export function describeCgroups(layout: CgroupLayout, v2Controllers: readonly string[]): CheckResult {
  const name = 'cgroups';
  if (layout.hierarchies.length === 0)
    return fail(name, 'no cgroup filesystem is mounted', 'mount cgroup2 at /sys/fs/cgroup (or boot with systemd)');
  const v2 = layout.hierarchies.find((h) => h.version === 2);
  const shape =
    layout.mode === 'unified'
      ? `v2 (unified) at ${v2?.mountPoint}`
      : layout.mode === 'hybrid'
        ? `hybrid: v1 controllers, an empty v2 tree at ${v2?.mountPoint}`
        : 'v1 (legacy)';
  const available = layout.mode === 'unified' ? v2Controllers : layout.hierarchies.flatMap((h) => h.controllers);
  const missing = CONTROLLERS.filter((c) => !available.includes(c));
  if (missing.length > 0) {
    return warn(
      name,
      `${shape}; no ${missing.join(', ')} controller: pods' limits and figures for it do not work`,
      `enable the ${missing.join(', ')} controller`,
    );
  }
  return ok(name, `${shape}; ${CONTROLLERS.join(', ')} controllers`);
}

export async function cgroupsCheck(): Promise<CheckResult> {
  const layout = await hostCgroupLayout();
  const v2 = layout.hierarchies.find((h) => h.version === 2);
  const controllers = v2
    ? (await readFile(`${v2.mountPoint}/cgroup.controllers`, 'utf8').catch(() => '')).split(/\s+/).filter(Boolean)
    : [];
  return describeCgroups(layout, controllers);
}

/**
 * Whether a process may set a negative oom_score_adj. Where it may not (a host that is itself a
 * container), containerd's CRI must clamp what pods ask (restrict_oom_score_adj), else their
 * containers fail to start. `containerdRestricts`: what containerd's configuration says, when known.
 */
export async function oomScoreAdjCheck(containerdRestricts: boolean | undefined): Promise<CheckResult> {
  const name = 'oom_score_adj';
  const probe = await runForCheck(
    '/bin/sh',
    ['-c', `echo ${CRI_OOM_SCORE_ADJ} 2>/dev/null > /proc/self/oom_score_adj`],
    OOM_SCORE_ADJ_TIMEOUT_MS,
  );
  if (probe.ok) return ok(name, `a process may lower it to ${CRI_OOM_SCORE_ADJ}, as CRI asks for pods`);
  const refused = `a process may not lower it to ${CRI_OOM_SCORE_ADJ} here`;
  if (containerdRestricts === true) return ok(name, `${refused}; containerd's CRI clamps what pods ask (restrict_oom_score_adj)`);
  const fix = "set restrict_oom_score_adj = true under [plugins.'io.containerd.cri.v1.runtime'] in containerd's config";
  const known = containerdRestricts === false ? "containerd's CRI does not clamp them" : "containerd's CRI must clamp them";
  return warn(name, `${refused}: ${known}, or pods that ask for one fail to start`, fix);
}
