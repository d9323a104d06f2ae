// Where kuasard's bundle is and the Node.js flags it runs with, wherever it is started for real:
// the systemd unit (systemd-unit.ts) and the devenv, whose kuasard the tests and the benchmark
// measure. V8 reads the flags when it creates the heap, so they go on node's command line
// (v8.setFlagsFromString in kuasard itself would come too late).
import { fileURLToPath } from 'node:url';

/**
 * --max-semi-space-size=2: the young generation's two semi-spaces grow up to 16 MiB each by
 * default, and kuasard's start (configuration, checks, every module) makes them grow that far;
 * the pages stay touched afterwards. Capped at 2 MiB, an idle kuasard with every kind enabled
 * holds about 13 MiB less private memory after GC (measured: 43 -> 30 MiB; 1 MiB saves no more,
 * 4 MiB saves 7 MiB, 8 MiB nothing). The cost is more, smaller scavenges: kuasard's allocation
 * rate is that of RPCs and pod records, not of a batch job.
 * --no-opt: no TurboFan. V8 still compiles hot functions with Sparkplug, its baseline compiler;
 * TurboFan's optimised code and the memory it keeps for compiling cost an idle kuasard about
 * 3.5 MiB private (measured on the bundle: 18.6 -> 15.0 MiB). kuasard's own JavaScript is a small
 * part of a pod start (its RPCs' own work is a few ms of 100-300; the rest is runc, containerd and
 * the kernel): a benchmark run with and without it showed no loss beyond the noise.
 * --single-threaded-gc: V8 collects on the thread whose heap it is, without helper threads. A
 * scavenge of a 2 MiB young generation is too small to gain from being split, and waking four
 * helpers for each one cost more than it saved: they took a third of a core while wasm containers
 * were created and deleted at 170 per second through the Task API; with it, 213 per second
 * (medians of three alternated runs, 1000 containers each). Its effect on memory was within the noise.
 * --lite-mode saved no more (14.9-15.4 MiB) and also drops Sparkplug; --optimize-for-size about 1
 * MiB; MALLOC_ARENA_MAX nothing past the noise: not set.
 * --expose-gc: kuasard collects its garbage once a burst of calls is over (daemon/idle-memory.ts),
 * before handing the C allocator's free memory back; V8 would shrink its heap by itself only
 * tens of seconds later.
 */
export const KUASARD_NODE_FLAGS: readonly string[] = ['--max-semi-space-size=2', '--no-opt', '--single-threaded-gc', '--expose-gc'];

/** kuasard's bundle (src/install/bundle-kuasard.ts writes it): dist/bundle/kuasard/, from dist/src/install/. */
export const KUASARD_BUNDLE_DIR = fileURLToPath(new URL('../../bundle/kuasard/', import.meta.url));

/** What the systemd unit and the devenv run: the bundle's entry. */
export const KUASARD_ENTRY = `${KUASARD_BUNDLE_DIR}kuasard.js`;
