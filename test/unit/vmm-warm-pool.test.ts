// The vmm kind's warm pool: a warm VM's placeholder MAC, the memory figures the pool's budget
// reads from /proc, the size of the VM a pod needs (which decides whether a warm VM fits it), and
// the pool's policy (pacing, claims, replacement, memory) driven with stand-in VMs.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { pino } from 'pino';
import { vmmConfigSchema } from '../../src/kinds/vmm/config.js';
import { podVmSize } from '../../src/kinds/vmm/sandbox.js';
import { WarmPool, type PoolVm } from '../../src/kinds/vmm/warm-pool.js';
import { placeholderMac } from '../../src/kinds/vmm/warm-vm.js';
import { hostAvailableBytes, kibField, residentBytes } from '../../src/linux/memory.js';

describe('vmm warm pool', () => {
  it("gives each warm VM's NIC a locally administered unicast MAC of its own", () => {
    const macs = Array.from({ length: 200 }, placeholderMac);
    for (const mac of macs) {
      assert.match(mac, /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/);
      const first = Number.parseInt(mac.slice(0, 2), 16);
      assert.equal(first & 0x01, 0, `${mac} is unicast`);
      assert.equal(first & 0x02, 0x02, `${mac} is locally administered`);
    }
    assert.equal(new Set(macs).size, macs.length);
  });

  it('reads kB fields of /proc files as bytes; this process and the host have memory', async () => {
    assert.equal(kibField('Name:\tnode\nVmRSS:\t   1234 kB\nVmSwap:\t0 kB\n', 'VmRSS'), 1234 * 1024);
    assert.equal(kibField('VmRSSx:\t1 kB\n', 'VmRSS'), undefined);
    assert.ok(((await residentBytes(process.pid)) ?? 0) > 1024 * 1024);
    assert.equal(await residentBytes(2 ** 22 + 1), undefined, 'no such process');
    assert.ok((await hostAvailableBytes()) > 0);
  });

  it("sizes a pod's VM from its limits or the defaults, plus the guest's overhead: the default pod fits a warm VM exactly", () => {
    const config = vmmConfigSchema.parse({});
    const warm = podVmSize(undefined, config);
    assert.deepEqual(warm, { vcpus: 1, memoryMib: 256 + 160 });
    assert.deepEqual(podVmSize({ cpuQuotaUs: 150_000, cpuPeriodUs: 100_000, memoryLimitBytes: 512 * 1024 * 1024 }, config), {
      vcpus: 2,
      memoryMib: 512 + 160,
    });
    assert.deepEqual(podVmSize({ cpuQuotaUs: 0, cpuPeriodUs: 0, memoryLimitBytes: 0 }, config), warm);
  });
});

/** A promise and its settling functions (Node 20 has no Promise.withResolvers). */
function deferred<T>() {
  let resolve!: (value: T) => void;
  let reject!: (err: Error) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  promise.catch(() => undefined);
  return { promise, resolve, reject };
}

/** A stand-in for a warm VM whose boot, answers, memory and death the test decides. */
class FakeVm implements PoolVm {
  static made: FakeVm[] = [];
  readonly id = `vm${FakeVm.made.length}`;
  readonly pid = 1000 + FakeVm.made.length;
  answering = true;
  endedByPool = false;
  private booted = deferred<{ bootId: string }>();
  private exited = deferred<void>();
  readonly ended = this.exited.promise;

  constructor() {
    FakeVm.made.push(this);
  }
  bootDone(): void {
    this.booted.resolve({ bootId: this.id });
  }
  bootFails(): void {
    this.booted.reject(new Error('no boot'));
  }
  boot(): Promise<{ bootId: string }> {
    return this.booted.promise;
  }
  async answers(): Promise<boolean> {
    return this.answering;
  }
  die(): void {
    this.exited.resolve();
  }
  async end(): Promise<void> {
    this.endedByPool = true;
    this.exited.resolve();
    // As for a real VM: one ended while it boots fails its boot (a settled boot stays settled).
    this.booted.reject(new Error('ended while booting'));
  }
  handOver(): Promise<never> {
    throw new Error('not in this test');
  }
}

const MIB = 1024 * 1024;

function pool(
  overrides: { warm_pool?: number; maxMib?: number; available?: () => number; resident?: number; refillDelayMs?: number } = {},
) {
  FakeVm.made = [];
  const config = {
    ...vmmConfigSchema.parse({}),
    warm_pool: overrides.warm_pool ?? 2,
    warm_pool_max_memory_mib: overrides.maxMib ?? 4096,
    warm_pool_min_host_available_mib: 1024,
    warm_pool_check_interval_ms: 3_600_000,
    warm_pool_refill_delay_ms: overrides.refillDelayMs ?? 0,
  };
  const warm = new WarmPool({
    config,
    size: { vcpus: 1, memoryMib: 416 },
    newVm: () => new FakeVm(),
    memory: {
      residentBytes: async () => (overrides.resident ?? 400) * MIB,
      hostAvailableBytes: async () => (overrides.available?.() ?? 8192) * MIB,
    },
    log: pino({ level: 'silent' }),
  });
  return warm;
}

/** Lets the pool's promise chains run. */
const settle = () => new Promise((resolve) => setImmediate(resolve));

async function bootNext(expectedCount: number): Promise<FakeVm> {
  await settle();
  assert.equal(FakeVm.made.length, expectedCount, `${expectedCount} VMs made so far`);
  const vm = FakeVm.made[expectedCount - 1]!;
  vm.bootDone();
  await settle();
  return vm;
}

describe('the warm pool, with stand-in VMs', () => {
  it('boots one VM at a time up to its size, gives the longest-ready first, and refills', async () => {
    const warm = pool({ warm_pool: 2 });
    warm.start();
    await settle();
    assert.equal(FakeVm.made.length, 1, 'one boot at a time');
    assert.deepEqual({ ready: warm.status().ready, booting: warm.status().booting }, { ready: 0, booting: 1 });
    await bootNext(1);
    await bootNext(2);
    await settle();
    assert.equal(FakeVm.made.length, 2, 'full: no more boots');
    assert.equal(warm.take(), FakeVm.made[0]);
    await bootNext(3);
    assert.equal(warm.status().ready, 2);
    assert.equal(warm.status().claims, 1);
    await warm.close();
    assert.ok(
      FakeVm.made.filter((vm) => vm !== FakeVm.made[0]).every((vm) => vm.endedByPool),
      'close ends the idle VMs, not the claimed one',
    );
    assert.equal(FakeVm.made[0]!.endedByPool, false);
  });

  it('begins no boot while a pod starts, and counts a pod that found it empty', async () => {
    const warm = pool({ warm_pool: 1 });
    const done = warm.startUnderWay();
    warm.start();
    await settle();
    assert.equal(FakeVm.made.length, 0, 'no boot during a pod start');
    assert.equal(warm.take(), undefined);
    assert.equal(warm.status().coldStarts, 1);
    done();
    await bootNext(1);
    assert.equal(warm.status().ready, 1);
    await warm.close();
  });

  it("waits warm_pool_refill_delay_ms after a pod's start before it boots, and closes at once meanwhile", async () => {
    const warm = pool({ warm_pool: 1, refillDelayMs: 300 });
    warm.startUnderWay()();
    warm.start();
    await settle();
    assert.equal(FakeVm.made.length, 0, 'no boot right after a pod started');
    await new Promise((resolve) => setTimeout(resolve, 400));
    await bootNext(1);
    assert.equal(warm.status().ready, 1);
    warm.take();
    warm.startUnderWay()();
    const closing = Date.now();
    await warm.close();
    assert.ok(Date.now() - closing < 200, 'close does not wait out the delay');
    assert.equal(FakeVm.made.length, 1);
  });

  it('replaces a VM that dies and one that stops answering; retries a boot that failed', async () => {
    const warm = pool({ warm_pool: 1 });
    warm.start();
    const first = await bootNext(1);
    first.die();
    await settle();
    await settle();
    assert.equal(warm.status().replaced, 1);
    const second = await bootNext(2);
    second.answering = false;
    await warm.check();
    assert.equal(warm.status().replaced, 2);
    assert.ok(second.endedByPool);
    await settle();
    FakeVm.made[2]!.bootFails();
    await new Promise((resolve) => setTimeout(resolve, 1_100));
    assert.equal(FakeVm.made.length, 4, 'a failed boot is tried again after a pause');
    await warm.close();
    assert.ok(FakeVm.made[3]!.endedByPool, 'close ends the VM booting');
    assert.equal(warm.status().ready, 0);
  });

  it('keeps within its memory budget, and gives VMs back while the host is short of memory', async () => {
    let available = 8192;
    const warm = pool({ warm_pool: 3, maxMib: 1000, resident: 400, available: () => available });
    warm.start();
    // Before any VM was measured, one counts as its size and QEMU's own: 416 + 160 MiB, so 1 fits.
    await bootNext(1);
    assert.equal(warm.status().target, 1);
    await warm.check();
    // Measured at 400 MiB each: 2 fit in 1000 MiB.
    assert.equal(warm.status().target, 2);
    assert.equal(warm.status().memoryBytes, 400 * MIB);
    await bootNext(2);
    available = 500;
    await warm.check();
    assert.deepEqual(
      { target: warm.status().target, ready: warm.status().ready, released: warm.status().released },
      { target: 0, ready: 1, released: 1 },
    );
    assert.ok(FakeVm.made[1]!.endedByPool, 'the newest goes first');
    await warm.check();
    assert.equal(warm.status().ready, 0);
    await settle();
    assert.equal(FakeVm.made.length, 2, 'no boot under pressure');
    available = 8192;
    await warm.check();
    await bootNext(3);
    assert.equal(warm.status().ready, 1, 'refills once the host has room again');
    await warm.close();
  });
});
