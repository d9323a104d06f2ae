// The imports of a suspendable module (rewrite.ts) that the instance may be suspended in: what
// the rewrite instruments and what the worker's imports (wasi-imports.cts) may suspend at.

/** The import a fuel check calls when its fuel runs out: the host may end the instance's time slice there. */
export const YIELD_IMPORT = { module: 'kuasar', name: 'yield' } as const;

/** The WASI calls that wait (a sleep, a read of stdin, a write to a full pipe, a poll) and the fuel check's yield. */
export const SUSPENDING_IMPORTS = [
  'wasi_snapshot_preview1.poll_oneoff',
  'wasi_snapshot_preview1.fd_read',
  'wasi_snapshot_preview1.fd_write',
  'wasi_snapshot_preview1.sched_yield',
  `${YIELD_IMPORT.module}.${YIELD_IMPORT.name}`,
];
