// The wasm kind's engine without containerd: compiled-module cache, worker pool and instances
// on real worker threads, the controlled WASI imports, and the descriptors node:wasi leaves open.
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import {
  type BigIntStats,
  closeSync,
  createReadStream,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Code, RuntimeError } from '../../src/base/errors.js';
import { writeWasmModules } from '../../src/devenv/images.js';
import { eventually } from '../../src/devenv/retry.js';
import { WasmInstance, type InstanceOptions } from '../../src/kinds/wasm/instance.js';
import { ModuleCache } from '../../src/kinds/wasm/module-cache.js';
import { readSubscriptions } from '../../src/kinds/wasm/wasi-imports.cjs';
import { MAX_INSTANCES_PER_THREAD, WasmThread, WorkerPool } from '../../src/kinds/wasm/worker-pool.js';
import { Rewriter, REWRITE_VERSION } from '../../src/kinds/wasm/rewriter.js';
import type { WorkerCommand } from '../../src/kinds/wasm/instance-protocol.cjs';
import type { Worker } from 'node:worker_threads';
import { closeDescriptorsUnder, descriptorsUnder } from '../../src/linux/descriptors.js';
import { pipe } from '../../src/linux/libc/files.js';

/** The test modules, compiled once from test/fixtures/wasm. */
const modulesDir = mkdtempSync(join(tmpdir(), 'wasm-fixtures-'));
const FIXTURES = ['hello', 'sleep', 'cat', 'loop', 'memory-hog', 'trap', 'chatter', 'read-file'];
await writeWasmModules(modulesDir, FIXTURES);
process.on('exit', () => rmSync(modulesDir, { recursive: true, force: true }));
const fixture = (name: string) => readFileSync(join(modulesDir, `${name}.wasm`));

const MiB = 1024 * 1024;
/** stdio for instances whose output no test reads: never a pipe, which the engine would read or make non-blocking. */
const devNull = openSync('/dev/null', 'r+');
process.on('exit', () => closeSync(devNull));
/** A guard against a hang, not a measure: every wait here normally takes milliseconds. */
const HANG_GUARD = { timeout: 60_000 };

describe('wasm engine', () => {
  let dir: string;
  let pool: WorkerPool;
  let modules: ModuleCache;

  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'wasm-engine-'));
    for (const name of FIXTURES) writeFileSync(join(dir, `${name}.wasm`), fixture(name));
    // One thread: every instance of these tests shares it.
    pool = new WorkerPool({ threads: 1, idleMs: 60_000 });
    modules = new ModuleCache(16 * MiB, new Rewriter(join(dir, 'cache')));
  });

  after(async () => {
    await pool.close();
    rmSync(dir, { recursive: true, force: true });
  });

  /** `module` run with no arguments, files or output (its stdio /dev/null), within 1 MiB. */
  const quietJob = (module: WebAssembly.Module): InstanceOptions => ({
    module,
    entry: '_start',
    args: [],
    env: {},
    preopens: {},
    stdio: [devNull, devNull, devNull],
    memoryLimit: MiB,
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
      if (input) {
        closeSync(input.read);
        closeSync(input.write);
      }
      return text;
    };
    return { instance, output, out };
  }

  it('runs a module to its end, and the next instance on the same thread', HANG_GUARD, async () => {
    const first = await instanceOf('hello', dir);
    first.instance.start();
    assert.deepEqual(await first.instance.ended, { exitStatus: 0, outOfMemory: false });
    assert.equal(await first.output(), 'hello\narg\n');
    const second = await instanceOf('hello', dir);
    second.instance.start();
    assert.equal((await second.instance.ended).exitStatus, 0);
    await second.output();
    assert.equal(pool.threadCount, 1);
  });

  it('wakes a module asleep for an hour when it is killed', HANG_GUARD, async () => {
    const { instance, output } = await instanceOf('sleep', dir);
    instance.start();
    assert.equal(instance.isRunning, true);
    instance.kill(15);
    assert.deepEqual(await instance.ended, { exitStatus: 143, signal: 15, outOfMemory: false });
    await output();
  });

  it('ends a module at its memory limit as out of memory', HANG_GUARD, async () => {
    const { instance, output } = await instanceOf('memory-hog', dir);
    instance.start();
    assert.deepEqual(await instance.ended, { exitStatus: 137, outOfMemory: true });
    assert.match(await output(), /out of memory/);
  });

  it('stops a module that never calls the host (an endless loop) when killed', HANG_GUARD, async () => {
    const { instance, output } = await instanceOf('loop', dir);
    instance.start();
    instance.kill(9);
    assert.equal((await instance.ended).exitStatus, 137);
    await output();
  });

  it('runs other instances of the thread to their end beside an endless loop, a sleeper, a trap and a memory hog', HANG_GUARD, async () => {
    const loop = await instanceOf('loop', dir);
    const sleeper = await instanceOf('sleep', dir);
    loop.instance.start();
    sleeper.instance.start();
    const others = await Promise.all(['trap', 'memory-hog', 'hello', 'hello'].map((name) => instanceOf(name, dir)));
    for (const o of others) o.instance.start();
    const ends = await Promise.all(others.map((o) => o.instance.ended));
    assert.deepEqual(
      ends.map((e) => e.exitStatus),
      [134, 137, 0, 0],
    );
    assert.equal(await others[2]!.output(), 'hello\narg\n');
    assert.equal(loop.instance.isRunning, true, 'the loop still runs');
    assert.equal(sleeper.instance.isRunning, true, 'the sleeper still sleeps');
    assert.equal(sleeper.instance.memoryInUse, 64 * 1024, "the sleeper's memory gauge: its one page");
    loop.instance.kill(9);
    sleeper.instance.kill(9);
    assert.deepEqual(
      (await Promise.all([loop.instance.ended, sleeper.instance.ended])).map((e) => e.exitStatus),
      [137, 137],
    );
    for (const o of [loop, sleeper, ...others]) if (o !== others[2]) await o.output();
    assert.equal(pool.threadCount, 1, 'all on one thread');
  });

  it(
    'suspends a module whose stdout pipe is full, runs the others meanwhile, and finishes its output once it is drained',
    HANG_GUARD,
    async () => {
      const chatter = await instanceOf('chatter', dir);
      chatter.instance.start();
      // Nobody reads the chatter's pipe yet: it fills (64 KiB), and a blocking write would hold the thread.
      const hello = await instanceOf('hello', dir);
      hello.instance.start();
      assert.equal((await hello.instance.ended).exitStatus, 0);
      assert.equal(await hello.output(), 'hello\narg\n');
      assert.equal(chatter.instance.isRunning, true, 'the chatter waits for room');
      const drained = await new Promise<number>((resolve, reject) => {
        let bytes = 0;
        const reader = createReadStream('', { fd: chatter.out.read, autoClose: false });
        reader.on('data', (chunk) => {
          bytes += chunk.length;
          if (bytes >= MiB) resolve(bytes);
        });
        reader.on('error', reject);
      });
      assert.equal(drained, MiB);
      assert.equal((await chatter.instance.ended).exitStatus, 0);
      await chatter.output();
    },
  );

  it('refuses a module that exports no memory with FailedPrecondition: its stack could not be kept', HANG_GUARD, async () => {
    // `(module (func (export "f") (result i32) i32.const 42))`
    writeFileSync(join(dir, 'no-memory.wasm'), Buffer.from('0061736d010000000105016000017f03020100070501016600000a06010400412a0b', 'hex'));
    const module = await modules.load(join(dir, 'no-memory.wasm'), MiB);
    await assert.rejects(
      WasmInstance.create(pool, {
        module,
        entry: 'f',
        args: [],
        env: {},
        preopens: {},
        stdio: [devNull, devNull, devNull],
        memoryLimit: MiB,
      }),
      (err: unknown) => err instanceof RuntimeError && err.code === Code.FailedPrecondition && /exports no memory/.test(err.message),
    );
  });

  it("reports a kill that raced with the module's own end as the kill", async () => {
    // A stand-in thread, to put the two events in the racy order: the module's own end arrives
    // after Kill.
    class RacingWorker extends EventEmitter {
      id = 0;
      postMessage(message: WorkerCommand) {
        if (message.type !== 'load') return;
        this.id = message.job.id;
        queueMicrotask(() => this.emit('message', { type: 'ready', id: this.id }));
      }
    }
    const worker = new RacingWorker();
    const thread = new WasmThread(worker as unknown as Worker);
    const racingPool = { acquire: async () => thread } as unknown as WorkerPool;
    const instance = await WasmInstance.create(racingPool, quietJob({} as WebAssembly.Module));
    instance.start();
    instance.kill(15);
    worker.emit('message', { type: 'exited', id: worker.id, status: 0, outOfMemory: false, killed: false });
    assert.deepEqual(await instance.ended, { exitStatus: 143, signal: 15, outOfMemory: false });
    assert.equal(thread.load, 0, 'the thread no longer hosts it');
  });

  it('ends the instances of a thread that ended, and never gives that thread out again', HANG_GUARD, async () => {
    const own = new WorkerPool({ threads: 1, idleMs: 60_000 });
    const ownModules = new ModuleCache(16 * MiB, new Rewriter(join(dir, 'cache')));
    try {
      const thread = await own.acquire();
      const module = await ownModules.load(join(dir, 'sleep.wasm'), MiB);
      const instance = await WasmInstance.create(own, quietJob(module));
      instance.start();
      await thread.thread.terminate();
      assert.deepEqual(
        await instance.ended,
        { exitStatus: 1, outOfMemory: false, descriptorsLeft: true },
        'its descriptors are left to the daemon',
      );
      assert.notEqual(await own.acquire(), thread);
    } finally {
      await own.close();
    }
  });

  it('ends a thread that hosted nothing for idleMs, and starts one again for the next instance', HANG_GUARD, async () => {
    const own = new WorkerPool({ threads: 1, idleMs: 100 });
    try {
      assert.equal(own.threadCount, 0, 'no thread before the first instance');
      const first = await own.acquire();
      assert.equal(own.threadCount, 1);
      await eventually(async () => assert.equal(own.threadCount, 0, 'the idle thread ended'), 30_000, 50);
      assert.notEqual(await own.acquire(), first);
    } finally {
      await own.close();
    }
  });

  it('copies stdin until end-of-file (cat.wasm)', HANG_GUARD, async () => {
    const input = pipe();
    const { instance, output } = await instanceOf('cat', dir, input.read);
    instance.start();
    writeFileSync(input.write, 'line one\n');
    // The module is suspended reading its stdin by now or soon: the second line wakes it.
    await new Promise((resolve) => setTimeout(resolve, 50));
    writeFileSync(input.write, 'line two\n');
    closeSync(input.write);
    assert.equal((await instance.ended).exitStatus, 0);
    closeSync(input.read);
    assert.equal(await output(), 'line one\nline two\n');
  });

  it('retires a thread once it has hosted MAX_INSTANCES_PER_THREAD instances: it ends with its last', HANG_GUARD, async () => {
    const own = new WorkerPool({ threads: 1, idleMs: 60_000 });
    try {
      const thread = await own.acquire();
      const stub = { message: () => undefined, threadEnded: () => undefined };
      for (let id = 1; id <= MAX_INSTANCES_PER_THREAD; id++) thread.host(id, stub);
      assert.equal(thread.retiring, true);
      const next = await own.acquire();
      assert.notEqual(next, thread, 'a retiring thread takes no new instance');
      const ended = new Promise((resolve) => thread.thread.once('exit', resolve));
      for (let id = 1; id <= MAX_INSTANCES_PER_THREAD; id++) thread.leave(id);
      await ended;
      assert.equal(thread.alive, false);
    } finally {
      await own.close();
    }
  });
});

describe('node:wasi and the descriptors of an instance', () => {
  /** Runs `module` with `root` preopened as `/` (and `/data` as a second preopen) until it ends. */
  async function runIn(root: string, module: string, args: string[], kill = false): Promise<{ exitStatus: number; output: string }> {
    const pool = new WorkerPool({ threads: 1, idleMs: 60_000 });
    const out = pipe();
    const stdin = openSync('/dev/null', 'r');
    try {
      writeFileSync(join(root, `${module}.wasm`), fixture(module));
      const instance = await WasmInstance.create(pool, {
        module: await new ModuleCache(MiB, new Rewriter(join(root, 'cache'))).load(join(root, `${module}.wasm`), MiB),
        entry: '_start',
        args: [module, ...args],
        env: {},
        preopens: { '/': root, '/data': join(root, 'data') },
        stdio: [stdin, out.write, out.write],
        memoryLimit: MiB,
      });
      instance.start();
      if (kill) instance.kill(9);
      const { exitStatus } = await instance.ended;
      closeSync(out.write);
      return { exitStatus, output: readFileSync(out.read, 'utf8') };
    } finally {
      closeSync(stdin);
      closeSync(out.read);
      await pool.close();
    }
  }

  it('closes the preopened directories and the files the module left open when the instance ends', HANG_GUARD, async () => {
    const root = mkdtempSync(join(tmpdir(), 'wasm-preopen-'));
    try {
      mkdirSync(join(root, 'data'));
      writeFileSync(join(root, 'data', 'message.txt'), 'kept open\n');
      // read-file opens the file, copies it and exits without closing it.
      const { exitStatus, output } = await runIn(root, 'read-file', []);
      assert.equal(exitStatus, 0);
      assert.equal(output, 'kept open\n');
      assert.deepEqual(descriptorsUnder(root), [], 'neither the preopens nor the file stay open');
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });

  it('closes them for a killed instance too, and closeDescriptorsUnder finds what a thread that ended left', HANG_GUARD, async () => {
    const root = mkdtempSync(join(tmpdir(), 'wasm-preopen-'));
    try {
      mkdirSync(join(root, 'data'));
      const { exitStatus } = await runIn(root, 'sleep', ['60'], true);
      assert.equal(exitStatus, 137);
      assert.deepEqual(descriptorsUnder(root), []);
      // The fallback, for descriptors nobody else can close any more.
      const left = openSync(join(root, 'data'), 'r');
      assert.deepEqual(
        descriptorsUnder(root).map((d) => d.fd),
        [left],
      );
      assert.equal(closeDescriptorsUnder(root), 1);
      assert.deepEqual(descriptorsUnder(root), []);
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });
});

describe('ModuleCache', () => {
  const dir = mkdtempSync(join(tmpdir(), 'wasm-cache-'));
  const rewriter = new Rewriter(join(dir, 'cache'));
  /** `(module (func (export "f") (result i32) i32.const 42))` */
  const ANSWER_MODULE_HEX = '0061736d010000000105016000017f03020100070501016600000a06010400412a0b';
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('compiles a module once per content and cap', async () => {
    const cache = new ModuleCache(MiB, rewriter);
    writeFileSync(join(dir, 'a.wasm'), fixture('hello'));
    writeFileSync(join(dir, 'b.wasm'), fixture('hello'));
    const a = await cache.load(join(dir, 'a.wasm'), MiB);
    assert.equal(await cache.load(join(dir, 'b.wasm'), MiB), a, 'same bytes, same cap: the same Module');
    assert.notEqual(await cache.load(join(dir, 'a.wasm'), 2 * MiB), a, 'another cap rewrites the module');
    assert.equal(cache.size, 2);
  });

  it('knows a file read before by its identity, and reads one changed in place or replaced again', async () => {
    const cache = new ModuleCache(MiB, rewriter);
    const path = join(dir, 'changing.wasm');
    writeFileSync(path, fixture('hello'));
    const hello = await cache.load(path, MiB);
    assert.equal(await cache.load(path, MiB), hello, 'the same file: the same Module');
    // Changed within the file system's clock tick to bytes of the same size: it may carry the
    // same change time, and must not be taken for the first.
    const hallo = Buffer.from(fixture('hello').toString('latin1').replace('hello\n', 'hallo\n'), 'latin1');
    assert.equal(hallo.length, fixture('hello').length);
    writeFileSync(path, hallo);
    assert.notEqual(await cache.load(path, MiB), hello, 'written in place, same size: read again');
    writeFileSync(path, fixture('sleep'));
    const changed = await cache.load(path, MiB);
    assert.notEqual(changed, hello, 'written in place: read again');
    rmSync(path);
    writeFileSync(`${path}.new`, fixture('hello'));
    renameSync(`${path}.new`, path);
    assert.equal(await cache.load(path, MiB), hello, 'replaced by the first bytes: their Module');
  });

  it('does not read a file it knows by a settled identity again; one changed within the last second it does', async () => {
    const cache = new ModuleCache(MiB, rewriter);
    const path = join(dir, 'known.wasm');
    writeFileSync(path, fixture('hello'));
    const fresh = statSync(path, { bigint: true });
    // The same file as seen a minute after its last change.
    const settled = Object.assign(Object.create(Object.getPrototypeOf(fresh) as object) as BigIntStats, fresh, {
      ctimeNs: fresh.ctimeNs - 60_000_000_000n,
    });
    const hello = await cache.load(path, MiB, settled);
    await cache.load(path, MiB, fresh);
    rmSync(path);
    assert.equal(await cache.load(path, MiB, settled), hello, 'known by its identity: not read (the file is gone)');
    await assert.rejects(cache.load(path, MiB, fresh), { code: 'ENOENT' }, 'changed just now: read again');
  });

  it('keeps at most its capacity in module bytes, dropping the least recently used', async () => {
    const hello = fixture('hello');
    // Room for two capped copies (a cap adds a few bytes to the module), not three.
    const cache = new ModuleCache(Math.floor(hello.length * 2.5), rewriter);
    writeFileSync(join(dir, 'h.wasm'), hello);
    for (const limit of [MiB, 2 * MiB, 3 * MiB]) await cache.load(join(dir, 'h.wasm'), limit);
    assert.equal(cache.size, 2);
  });

  it('compiles the suspendable form, kept on disk by digest for the next daemon', async () => {
    writeFileSync(join(dir, 'c.wasm'), fixture('hello'));
    const cacheDir = join(dir, 'own-cache');
    const module = await new ModuleCache(MiB, new Rewriter(cacheDir)).load(join(dir, 'c.wasm'), MiB);
    const exported = WebAssembly.Module.exports(module).map((e) => e.name);
    assert.ok(exported.includes('asyncify_start_unwind'), `asyncify's exports: ${exported.join(', ')}`);
    const kept = readdirSync(join(cacheDir, REWRITE_VERSION));
    assert.equal(kept.length, 1);
    // A stand-in in the cache file: what a later cache (a later daemon) compiles is the kept file.
    writeFileSync(join(cacheDir, REWRITE_VERSION, kept[0]!), Buffer.from(ANSWER_MODULE_HEX, 'hex'));
    const again = await new ModuleCache(MiB, new Rewriter(cacheDir)).load(join(dir, 'c.wasm'), MiB);
    assert.deepEqual(
      WebAssembly.Module.exports(again).map((e) => e.name),
      ['f'],
    );
  });

  it('refuses bytes that are not a module with InvalidArgument', async () => {
    const cache = new ModuleCache(MiB, rewriter);
    // A valid header and memory section, then a section that is not WebAssembly.
    writeFileSync(join(dir, 'bad.wasm'), Buffer.from([0, 0x61, 0x73, 0x6d, 1, 0, 0, 0, 0x0a, 0x01, 0xff]));
    await assert.rejects(
      cache.load(join(dir, 'bad.wasm'), MiB),
      (err: unknown) => err instanceof RuntimeError && err.code === Code.InvalidArgument,
    );
    assert.equal(cache.size, 0, 'a failed compilation is not kept');
  });
});

describe('readSubscriptions', () => {
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
    const clocks = readSubscriptions(view, 0, 2, 100, 1_000);
    assert.deepEqual(clocks, [
      { kind: 'clock', userdata: 7n, deadlineMs: 2_100 },
      // Realtime 5 s absolute, with the wall clock at 1 s: due 4 s from now.
      { kind: 'clock', userdata: 8n, deadlineMs: 4_100 },
    ]);
  });

  it('reads a wait on stdin, and leaves a poll that waits on another descriptor to node:wasi', () => {
    const view = new DataView(new ArrayBuffer(256));
    subscription(view, 0, { userdata: 1n, tag: 0, timeoutNs: 1n });
    subscription(view, 48, { userdata: 2n, tag: 1, clock: 0 });
    assert.deepEqual(readSubscriptions(view, 0, 2, 0)?.[1], { kind: 'stdin', userdata: 2n });
    subscription(view, 48, { userdata: 2n, tag: 1, clock: 5 });
    assert.equal(readSubscriptions(view, 0, 2), undefined);
  });
});
