// The wasm kind's engine without containerd: compiled-module cache, worker pool and instances
// on real worker threads, the controlled WASI imports, and the descriptors node:wasi leaves open.
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { closeSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Code, RuntimeError } from '../../src/base/errors.js';
import { writeWasmModules } from '../../src/devenv/images.js';
import { eventually } from '../../src/devenv/retry.js';
import { WasmInstance, type InstanceOptions } from '../../src/kinds/wasm/instance.js';
import { ModuleCache } from '../../src/kinds/wasm/module-cache.js';
import { readClockSubscriptions } from '../../src/kinds/wasm/wasi-imports.cjs';
import { MAX_INSTANCES_PER_WORKER, WorkerPool } from '../../src/kinds/wasm/worker-pool.js';
import { closeDescriptorsUnder, descriptorsUnder } from '../../src/linux/descriptors.js';
import { pipe } from '../../src/linux/libc/files.js';

/** The test modules, compiled once from test/fixtures/wasm. */
const modulesDir = mkdtempSync(join(tmpdir(), 'wasm-fixtures-'));
await writeWasmModules(modulesDir, ['hello', 'sleep', 'cat', 'loop', 'memory-hog']);
process.on('exit', () => rmSync(modulesDir, { recursive: true, force: true }));
const fixture = (name: string) => readFileSync(join(modulesDir, `${name}.wasm`));

const MiB = 1024 * 1024;
/** A guard against a hang, not a measure: every wait here normally takes milliseconds. */
const HANG_GUARD = { timeout: 60_000 };

describe('wasm engine', () => {
  let dir: string;
  let pool: WorkerPool;
  let modules: ModuleCache;

  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'wasm-engine-'));
    for (const name of ['hello', 'sleep', 'cat', 'loop', 'memory-hog']) writeFileSync(join(dir, `${name}.wasm`), fixture(name));
    pool = new WorkerPool({ warm: 0, idleMs: 60_000, warmIdleMs: 60_000 });
    modules = new ModuleCache(16 * MiB);
  });

  after(async () => {
    await pool.close();
    rmSync(dir, { recursive: true, force: true });
  });

  /** An instance of `name`.wasm whose stdout is a pipe; the root preopen is `root`. */
  async function instanceOf(name: string, root: string, stdin = -1) {
    const out = pipe();
    const input = stdin < 0 ? pipe() : undefined;
    const options: InstanceOptions = {
      module: await modules.load(join(dir, `${name}.wasm`), 16 * MiB),
      entry: '_start',
      args: [name, 'arg'],
      env: {},
      preopens: { '/': root },
      stdio: [input ? input.read : stdin, out.write, out.write],
      memoryLimit: 16 * MiB,
    };
    const instance = await WasmInstance.create(pool, options);
    const output = async () => {
      closeSync(out.write);
      const text = readFileSync(out.read, 'utf8');
      closeSync(out.read);
      return text;
    };
    return { instance, output, input };
  }

  it('runs a module to its end on a pooled worker, and the next instance reuses that worker', HANG_GUARD, async () => {
    const first = await instanceOf('hello', dir);
    first.instance.start();
    const end = await first.instance.ended;
    assert.deepEqual(end, { exitStatus: 0, outOfMemory: false });
    assert.equal(await first.output(), 'hello\narg\n');
    assert.equal(pool.idleCount, 1, 'the worker went back to the pool');
    const second = await instanceOf('hello', dir);
    assert.equal(pool.idleCount, 0, 'and was taken again');
    second.instance.start();
    assert.equal((await second.instance.ended).exitStatus, 0);
    await second.output();
  });

  it('wakes a module asleep for an hour when it is killed, and never reuses a killed worker', HANG_GUARD, async () => {
    const { instance, output } = await instanceOf('sleep', dir);
    const idle = pool.idleCount;
    instance.start();
    assert.equal(instance.isRunning, true);
    instance.kill(15);
    assert.deepEqual(await instance.ended, { exitStatus: 143, signal: 15, outOfMemory: false });
    assert.equal(pool.idleCount, idle, 'the killed worker is not back in the pool');
    await output();
  });

  it('ends a module at its memory limit as out of memory, and ends the worker it grew big on', HANG_GUARD, async () => {
    const { instance, output } = await instanceOf('memory-hog', dir);
    const idle = pool.idleCount;
    instance.start();
    assert.deepEqual(await instance.ended, { exitStatus: 137, outOfMemory: true });
    assert.equal(pool.idleCount, idle, 'a worker holding 16 MiB of dead linear memory is not reused');
    assert.match(await output(), /out of memory/);
  });

  it('stops a module that never calls the host (an endless loop) when killed', HANG_GUARD, async () => {
    const { instance, output } = await instanceOf('loop', dir);
    instance.start();
    instance.kill(9);
    assert.equal((await instance.ended).exitStatus, 137);
    await output();
  });

  it("reports a kill that raced with the module's own end as the kill, and keeps that worker out of the pool", async () => {
    // A stand-in thread, to put the two events in the racy order: the module's own end arrives
    // after Kill (which terminates the thread), before the thread's exit.
    class RacingThread extends EventEmitter {
      postMessage(message: { type: string }) {
        if (message.type === 'load') queueMicrotask(() => this.emit('message', { type: 'ready' }));
      }
      terminate() {
        return Promise.resolve(1);
      }
    }
    const thread = new RacingThread();
    const released: unknown[] = [];
    const racingPool = {
      acquire: async () => ({ thread, served: 1, alive: true }),
      release: (w: unknown) => released.push(w),
    } as unknown as WorkerPool;
    const instance = await WasmInstance.create(racingPool, {
      module: {} as WebAssembly.Module,
      entry: '_start',
      args: [],
      env: {},
      preopens: {},
      stdio: [0, 1, 2],
      memoryLimit: MiB,
    });
    instance.start();
    instance.kill(15);
    thread.emit('message', { type: 'exited', status: 0, outOfMemory: false });
    thread.emit('exit', 1);
    assert.deepEqual(await instance.ended, { exitStatus: 143, signal: 15, outOfMemory: false });
    assert.deepEqual(released, [], 'a terminated worker is never lent out again');
  });

  it('never lends out a worker whose thread ended while it sat idle', HANG_GUARD, async () => {
    const own = new WorkerPool({ warm: 0, idleMs: 60_000, warmIdleMs: 60_000 });
    try {
      const worker = await own.acquire();
      own.release(worker);
      assert.equal(own.idleCount, 1);
      await worker.thread.terminate();
      await new Promise((resolve) => setImmediate(resolve));
      assert.equal(own.idleCount, 0);
      own.release(worker);
      assert.equal(own.idleCount, 0);
    } finally {
      await own.close();
    }
  });

  it(
    'starts its warm workers with the first container, ends them all once no container came for warmIdleMs, and starts them again with the next',
    HANG_GUARD,
    async () => {
      const own = new WorkerPool({ warm: 2, idleMs: 100, warmIdleMs: 300 });
      try {
        assert.equal(own.idleCount, 0, 'no worker before the first container');
        const first = await own.acquire();
        await eventually(async () => assert.equal(own.idleCount, 2, 'the warm workers started behind the first container'), 30_000, 20);
        own.release(first);
        await eventually(async () => assert.equal(own.idleCount, 0, 'every idle worker ended once containers stopped coming'), 30_000, 50);
        own.release(await own.acquire());
        await eventually(
          async () => assert.ok(own.idleCount >= 2, `warm again after the next container (${own.idleCount} idle)`),
          30_000,
          20,
        );
      } finally {
        await own.close();
      }
    },
  );

  it('copies stdin until end-of-file (cat.wasm)', HANG_GUARD, async () => {
    const input = pipe();
    const { instance, output } = await instanceOf('cat', dir, input.read);
    instance.start();
    writeFileSync(input.write, 'line one\nline two\n');
    closeSync(input.write);
    assert.equal((await instance.ended).exitStatus, 0);
    closeSync(input.read);
    assert.equal(await output(), 'line one\nline two\n');
  });

  it('lends the same worker out again until it has served MAX_INSTANCES_PER_WORKER instances, then retires it', HANG_GUARD, async () => {
    const own = new WorkerPool({ warm: 0, idleMs: 60_000, warmIdleMs: 60_000 });
    try {
      let worker = await own.acquire();
      const first = worker.thread.threadId;
      for (let i = 1; i < MAX_INSTANCES_PER_WORKER; i++) {
        own.release(worker);
        worker = await own.acquire();
        assert.equal(worker.thread.threadId, first);
      }
      own.release(worker);
      assert.equal(own.idleCount, 0, 'retired, not idle');
      const next = await own.acquire();
      assert.notEqual(next.thread.threadId, first);
      own.release(next);
    } finally {
      await own.close();
    }
  });
});

describe('node:wasi and the descriptors of an instance', () => {
  it('leaves the preopened directory open after the instance ended; closeDescriptorsUnder closes it', HANG_GUARD, async () => {
    const root = mkdtempSync(join(tmpdir(), 'wasm-preopen-'));
    const pool = new WorkerPool({ warm: 0, idleMs: 60_000, warmIdleMs: 60_000 });
    try {
      writeFileSync(join(root, 'hello.wasm'), fixture('hello'));
      const out = pipe();
      const instance = await WasmInstance.create(pool, {
        module: await new ModuleCache(MiB).load(join(root, 'hello.wasm'), MiB),
        entry: '_start',
        args: ['hello'],
        env: {},
        preopens: { '/': root },
        stdio: [out.read, out.write, out.write],
        memoryLimit: MiB,
      });
      instance.start();
      await instance.ended;
      // What the wasm kind depends on: were node:wasi to close them itself, closing them here
      // too could close descriptors reused by then.
      assert.deepEqual(
        descriptorsUnder(root).map((d) => d.target),
        [root],
        'node:wasi still holds the preopen',
      );
      assert.equal(closeDescriptorsUnder(root), 1);
      assert.deepEqual(descriptorsUnder(root), []);
      closeSync(out.read);
      closeSync(out.write);
    } finally {
      await pool.close();
      rmSync(root, { recursive: true, force: true });
    }
  });
});

describe('ModuleCache', () => {
  const dir = mkdtempSync(join(tmpdir(), 'wasm-cache-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('compiles a module once per content and cap', async () => {
    const cache = new ModuleCache(MiB);
    writeFileSync(join(dir, 'a.wasm'), fixture('hello'));
    writeFileSync(join(dir, 'b.wasm'), fixture('hello'));
    const a = await cache.load(join(dir, 'a.wasm'), MiB);
    assert.equal(await cache.load(join(dir, 'b.wasm'), MiB), a, 'same bytes, same cap: the same Module');
    assert.notEqual(await cache.load(join(dir, 'a.wasm'), 2 * MiB), a, 'another cap rewrites the module');
    assert.equal(cache.size, 2);
  });

  it('keeps at most its capacity in module bytes, dropping the least recently used', async () => {
    const hello = fixture('hello');
    // Room for two capped copies (a cap adds a few bytes to the module), not three.
    const cache = new ModuleCache(Math.floor(hello.length * 2.5));
    writeFileSync(join(dir, 'h.wasm'), hello);
    for (const limit of [MiB, 2 * MiB, 3 * MiB]) await cache.load(join(dir, 'h.wasm'), limit);
    assert.equal(cache.size, 2);
  });

  it('refuses bytes that are not a module with InvalidArgument', async () => {
    const cache = new ModuleCache(MiB);
    // A valid header and memory section, then a section that is not WebAssembly.
    writeFileSync(join(dir, 'bad.wasm'), Buffer.from([0, 0x61, 0x73, 0x6d, 1, 0, 0, 0, 0x0a, 0x01, 0xff]));
    await assert.rejects(
      cache.load(join(dir, 'bad.wasm'), MiB),
      (err: unknown) => err instanceof RuntimeError && err.code === Code.InvalidArgument,
    );
    assert.equal(cache.size, 0, 'a failed compilation is not kept');
  });
});

describe('readClockSubscriptions', () => {
  /** One subscription record of poll_oneoff at `at`. */
  function subscription(
    view: DataView,
    at: number,
    s: { userdata: bigint; tag: number; clock?: number; timeoutNs?: bigint; flags?: number },
  ) {
    view.setBigUint64(at, s.userdata, true);
    view.setUint8(at + 8, s.tag);
    view.setUint32(at + 16, s.clock ?? 1, true);
    view.setBigUint64(at + 24, s.timeoutNs ?? 0n, true);
    view.setUint16(at + 40, s.flags ?? 0, true);
  }

  it('reads relative and absolute clock deadlines', () => {
    const view = new DataView(new ArrayBuffer(256));
    subscription(view, 0, { userdata: 7n, tag: 0, timeoutNs: 2_000_000_000n });
    subscription(view, 48, { userdata: 8n, tag: 0, clock: 0, timeoutNs: 5_000_000_000n, flags: 1 });
    const clocks = readClockSubscriptions(view, 0, 2, 100, 1_000);
    assert.deepEqual(clocks, [
      { userdata: 7n, deadlineMs: 2_100 },
      // Realtime 5 s absolute, with the wall clock at 1 s: due 4 s from now.
      { userdata: 8n, deadlineMs: 4_100 },
    ]);
  });

  it('leaves a poll that waits on a descriptor to node:wasi', () => {
    const view = new DataView(new ArrayBuffer(256));
    subscription(view, 0, { userdata: 1n, tag: 0, timeoutNs: 1n });
    subscription(view, 48, { userdata: 2n, tag: 1 });
    assert.equal(readClockSubscriptions(view, 0, 2), undefined);
  });
});
