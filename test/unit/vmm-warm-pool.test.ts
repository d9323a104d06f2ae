// The pure parts of the vmm kind's warm pool: a warm VM's placeholder MAC, the memory figures the
// pool's budget reads from /proc, and the size of the VM a pod needs (which decides whether a
// warm VM fits it).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { vmmConfigSchema } from '../../src/kinds/vmm/config.js';
import { podVmSize } from '../../src/kinds/vmm/sandbox.js';
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
