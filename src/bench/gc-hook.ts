// Preloaded into kuasard by the benchmark and the churn test, and only there
// (NODE_OPTIONS="--expose-gc --import <this file>"): SIGUSR2 asks for a full garbage collection.
// V8 collects when it likes, so the PSS of a Node.js daemon read at a random moment holds a
// varying amount of garbage (over 15 MiB seen at 10 pods); a reading right after a full
// collection shows what is really kept, which is what a per-pod cost must be fitted to.
// After each collection one JSON line on stderr (kuasard's log) tells the live heap: the
// measure of what JavaScript objects stay, which the allocator's retained pages do not blur.
const gc = (globalThis as { gc?: () => void }).gc;
if (gc) {
  process.on('SIGUSR2', () => {
    gc();
    const { heapUsed, heapTotal, external } = process.memoryUsage();
    process.stderr.write(`${JSON.stringify({ msg: 'gc', heapUsed, heapTotal, external, time: new Date().toISOString() })}\n`);
  });
}
