// The kinds that the benchmark's kind-specific parts and targets are for, as their registrations
// say (KindBenchmark in src/kind-api/registration.ts). Each part is set for exactly one kind; any
// kind may have processes of its own per pod, whose memory the memory part reads.
import { findKind, KINDS } from '../kinds/index.js';
import type { KindBenchmark, KindRegistration, WarmPoolBenchmark } from '../kind-api/registration.js';

function theKind(what: string, has: (kind: KindRegistration) => boolean): KindRegistration {
  const found = (KINDS as readonly KindRegistration[]).filter(has);
  if (found.length !== 1) throw new Error(`exactly one registered kind must ${what}; ${found.map((k) => k.name).join(', ') || 'none'} do`);
  return found[0] as KindRegistration;
}

const versusBaseline = theKind('be compared with the baseline (bench.versusBaseline)', (kind) => kind.bench?.versusBaseline === true);

/** The kind measured against containerd's runc handler; the baseline's pods run this kind's idle workload. */
export const BASELINE_KIND = { name: versusBaseline.name, idle: versusBaseline.workloads.idle };

const inKuasard = theKind('run its containers inside kuasard (bench.inKuasard)', (kind) => kind.bench?.inKuasard !== undefined);

/** The kind whose containers run inside kuasard: its Task API rate and its memory per running container. */
export const IN_KUASARD_KIND = { name: inKuasard.name, ...inKuasard.bench!.inKuasard! };

/** Where the pods of `kind` keep processes of their own besides their containers', for kinds whose pods do. */
export function podProcessesOf(kind: string | undefined): KindBenchmark['podProcesses'] {
  return kind === undefined ? undefined : findKind(kind)?.bench?.podProcesses;
}

/**
 * The keys of each measured kind's table that the benchmark's kuasard sets (KindBenchmark.config)
 * in the environment whose cgroup is `cgroupName`, by kind; `kinds` empty: those a default run
 * measures. A kind not measured runs on its defaults, as a node runs it: the vmm kind's warm pool
 * would otherwise boot its VMs (emulated, a CPU each) beside the starts measured.
 */
export function kindConfigsInBench(cgroupName: string, kinds: readonly string[]): Record<string, Readonly<Record<string, unknown>>> {
  const measured = (kind: KindRegistration) => (kinds.length > 0 ? kinds.includes(kind.name) : !kind.bench?.onlyWhenAsked);
  return Object.fromEntries(
    (KINDS as readonly KindRegistration[]).flatMap((kind) =>
      kind.bench?.config && measured(kind) ? [[kind.name, kind.bench.config({ cgroupName })]] : [],
    ),
  );
}

/** The kinds of `handlers` that keep a warm pool in the benchmark (KindBenchmark.warmPool), with it. */
export function warmPoolsOf(kinds: readonly (string | undefined)[]): { kind: string; pool: WarmPoolBenchmark }[] {
  return [...new Set(kinds)].flatMap((kind) => {
    const pool = kind === undefined ? undefined : findKind(kind)?.bench?.warmPool;
    return kind !== undefined && pool ? [{ kind, pool }] : [];
  });
}
