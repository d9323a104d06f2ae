// The vmm kind's pure pieces: the QEMU command line of a pod's VM, the KVM probe's firmware, and
// how a container's spec is rewritten for the guest.
import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import type { PodSpec } from '../../src/base/model.js';
import { probeAccelOncePerBoot, probeFirmware } from '../../src/kinds/vmm/accel-probe.js';
import {
  emptyDirName,
  guestCgroupsPath,
  guestPathIn,
  guestResources,
  guestSpec,
  type GuestLayout,
} from '../../src/kinds/vmm/guest-spec.js';
import { parseInterfaces, parseRoutes, redirectCommands, tapCommands } from '../../src/kinds/vmm/network.js';
import { qemuArgs, type VmLayout } from '../../src/kinds/vmm/qemu-args.js';
import { fitVmMemory } from '../../src/kinds/vmm/vm-cgroup.js';
import { podDirPaths } from '../../src/oci-kind/pod-dir.js';
import type { Spec } from '../../src/oci/spec.js';
import { podSpec } from '../../src/devenv/pod-spec.js';

const vm: VmLayout = {
  name: 'kuasar-vmm-p1',
  machine: 'q35',
  accel: 'tcg',
  vcpus: 2,
  memoryMib: 416,
  kernel: '/img/vmlinuz',
  initrd: '/img/initrd.img',
  rootImage: '/img/root,fs.img',
  kernelParams: ['console=ttyS0', 'kuasar.agent_port=agent.0'],
  nics: [{ tap: 'kuasar-tap0', mac: '0a:58:0a:58:00:05' }],
  share: { dir: '/state/vmm/p1/shared', tag: 'kuasar' },
  agent: { portName: 'agent.0', socket: '/state/vmm/p1/agent' },
  qmpSocket: '/state/vmm/p1/qmp',
  consoleLog: '/state/vmm/p1/console.log',
  pidFile: '/state/vmm/p1/qemu.pid',
};

/** The value after each occurrence of `flag`. */
const valuesOf = (args: string[], flag: string) => args.flatMap((a, i) => (a === flag ? [args[i + 1]] : []));

test("a VM's QEMU command line: sized, daemonized, the root image read-only, the share over 9p, the agent's port on its socket", () => {
  const args = qemuArgs(vm);
  assert.deepEqual(valuesOf(args, '-machine'), ['q35']);
  assert.deepEqual(valuesOf(args, '-accel'), ['tcg,tb-size=64'], "TCG's translation buffer is bounded");
  assert.deepEqual(valuesOf(args, '-cpu'), ['max'], 'TCG emulates the most it can');
  assert.deepEqual(valuesOf(args, '-smp'), ['2']);
  assert.deepEqual(valuesOf(args, '-m'), ['416M']);
  assert.ok(args.includes('-daemonize') && args.includes('-no-reboot') && args.includes('-nodefaults'));
  assert.deepEqual(valuesOf(args, '-pidfile'), ['/state/vmm/p1/qemu.pid']);
  assert.deepEqual(valuesOf(args, '-append'), ['console=ttyS0 kuasar.agent_port=agent.0']);
  assert.deepEqual(
    valuesOf(args, '-drive'),
    ['if=none,id=root,file=/img/root,,fs.img,format=raw,readonly=on'],
    'a comma in a path is doubled',
  );
  assert.deepEqual(valuesOf(args, '-fsdev'), ['local,id=share,path=/state/vmm/p1/shared,security_model=passthrough,multidevs=remap']);
  assert.ok(valuesOf(args, '-device').includes('virtio-9p-pci,fsdev=share,mount_tag=kuasar'));
  assert.ok(valuesOf(args, '-device').includes('virtserialport,chardev=agent,name=agent.0'));
  assert.ok(valuesOf(args, '-chardev').includes('socket,id=agent,path=/state/vmm/p1/agent,server=on,wait=off'));
  assert.deepEqual(valuesOf(args, '-serial'), ['file:/state/vmm/p1/console.log']);
  assert.deepEqual(valuesOf(args, '-netdev'), ['tap,id=net0,ifname=kuasar-tap0,script=no,downscript=no']);
  assert.ok(valuesOf(args, '-device').includes('virtio-net-pci,netdev=net0,mac=0a:58:0a:58:00:05'), "the guest's NIC has the veth's MAC");
  assert.deepEqual(valuesOf(qemuArgs({ ...vm, nics: [] }), '-netdev'), [], 'no NIC for a pod on the node network');
  assert.deepEqual(valuesOf(qemuArgs({ ...vm, accel: 'kvm' }), '-cpu'), ['host']);
  assert.deepEqual(valuesOf(qemuArgs({ ...vm, accel: 'kvm' }), '-accel'), ['kvm']);
});

test("a VM's RAM fits under the pod's memory limit with QEMU's own; a limit too small for a guest is refused", () => {
  const budget = { qemuOverheadMib: 224, guestMinimumMib: 160 };
  const MiB = 1024n * 1024n;
  assert.equal(fitVmMemory(416, undefined, budget), 416, 'no limit: the size wanted');
  assert.equal(fitVmMemory(416, 2048n * MiB, budget), 416, 'a limit with room: the size wanted');
  assert.equal(fitVmMemory(416, 512n * MiB, budget), 288, 'the limit less QEMU');
  assert.equal(fitVmMemory(416, 384n * MiB, budget), 160, "just the guest's minimum");
  assert.throws(() => fitVmMemory(416, 200n * MiB, budget), /memory limit \(200 MiB\) cannot hold a VM: .* at least 384 MiB/);
});

test('the KVM probe firmware jumps nowhere: it writes 1 to the debug-exit port at the reset vector and halts', () => {
  const firmware = probeFirmware();
  assert.equal(firmware.length, 64 * 1024);
  assert.deepEqual([...firmware.subarray(0xfff0, 0xfff7)], [0xb0, 0x01, 0xe6, 0xf4, 0xf4, 0xeb, 0xfe]);
  assert.equal(firmware[0], 0xf4, 'hlt everywhere else');
});

const pod = (overrides: Partial<PodSpec> = {}): PodSpec => podSpec({ uid: 'u1', ...overrides });

const layout = (overrides: Partial<GuestLayout> = {}): GuestLayout => ({
  pod: pod(),
  cgroupsPath: '/kuasar/c1',
  rootfs: '/run/kuasar/shared/containers/c1/rootfs',
  bindSources: [],
  files: podDirPaths('/run/kuasar/shared'),
  namespaces: { ipc: '/run/kuasar/ns/ipc', uts: '/run/kuasar/ns/uts', pid: null },
  ...overrides,
});

const cri: Spec = {
  ociVersion: '1.2.0',
  hostname: 'ignored',
  process: { args: ['sh'], cwd: '/', apparmorProfile: 'cri-containerd.apparmor.d', selinuxLabel: 'x' } as Spec['process'],
  root: { path: 'rootfs', readonly: true },
  hooks: { createRuntime: [{ path: '/usr/bin/host-only' }] },
  mounts: [
    { destination: '/proc', type: 'proc', source: 'proc' },
    { destination: '/data', type: 'bind', source: '/var/lib/data', options: ['rbind', 'ro'] },
    { destination: '/cache', type: 'bind', source: '/var/lib/kubelet/pods/u1/volumes/kubernetes.io~empty-dir/cache', options: ['rbind'] },
  ],
  linux: {
    namespaces: [{ type: 'pid' }, { type: 'network', path: '/var/run/netns/cni-1' }, { type: 'ipc' }, { type: 'uts' }, { type: 'mount' }],
    mountLabel: 'y',
    sysctl: { 'net.ipv4.ip_unprivileged_port_start': '0', 'kernel.shm_rmid_forced': '1' },
    cgroupsPath: '/kubepods/podu1/c1',
    resources: { memory: { limit: 134217728 }, cpu: { shares: 512, quota: 50000, period: 100000, cpus: '2-3', mems: '0' } },
  },
};

test("a container's spec for the guest: guest root and bind sources, the pinned namespaces, the guest's network, nothing of the host's", () => {
  const spec = guestSpec(
    cri,
    layout({ bindSources: [undefined, '/run/kuasar/shared/containers/c1/mounts/1', '/run/kuasar/volumes/cache'] }),
  );
  assert.deepEqual(spec.root, { path: '/run/kuasar/shared/containers/c1/rootfs', readonly: true });
  const mounts = Object.fromEntries((spec.mounts ?? []).map((m) => [m.destination, m]));
  assert.equal(mounts['/proc']?.source, 'proc');
  assert.deepEqual(mounts['/data'], {
    destination: '/data',
    type: 'bind',
    source: '/run/kuasar/shared/containers/c1/mounts/1',
    options: ['rbind', 'ro'],
  });
  assert.equal(mounts['/cache']?.source, '/run/kuasar/volumes/cache');
  assert.equal(mounts['/etc/hosts']?.source, '/run/kuasar/shared/etc/hosts');
  assert.deepEqual(
    mounts['/etc/resolv.conf']?.options,
    ['rbind', 'rprivate', 'ro'],
    'read-only in a read-only root, as containerd mounts it',
  );
  assert.deepEqual(spec.linux?.namespaces, [
    { type: 'pid' },
    { type: 'ipc', path: '/run/kuasar/ns/ipc' },
    { type: 'uts', path: '/run/kuasar/ns/uts' },
    { type: 'mount' },
    { type: 'cgroup' },
  ]);
  assert.equal(spec.linux?.cgroupsPath, '/kuasar/c1', "the container's own cgroup in the guest, not the pod's on the host");
  assert.deepEqual(
    spec.linux?.resources,
    { memory: { limit: 134217728 }, cpu: { shares: 512, quota: 50000, period: 100000 } },
    "the host's CPU and memory-node sets are left out",
  );
  assert.deepEqual(spec.linux?.sysctl, { 'kernel.shm_rmid_forced': '1' }, "network sysctls are the guest's, set by the agent");
  assert.equal(spec.hooks, undefined);
  assert.equal(spec.hostname, undefined);
  assert.equal(spec.linux?.mountLabel, undefined);
  const proc = spec.process as Record<string, unknown>;
  assert.equal(proc.apparmorProfile, undefined);
  assert.equal(proc.selinuxLabel, undefined);
  assert.deepEqual(proc.args, ['sh']);
});

test("the resources of an update as the guest applies them; the guest's cgroup of a container", () => {
  assert.deepEqual(guestResources({ cpu: { cpus: '0-1', quota: 1000 }, pids: { limit: 10 } }), {
    cpu: { quota: 1000 },
    pids: { limit: 10 },
  });
  assert.deepEqual(guestResources({ memory: { limit: 1 } }), { memory: { limit: 1 } });
  assert.equal(guestCgroupsPath('abc'), '/kuasar/abc');
});

test('a pod that shares its PID namespace: every container joins the one the agent pinned', () => {
  const shared = layout({
    pod: pod({ pidMode: 'pod' }),
    namespaces: { ipc: '/i', uts: '/u', pid: '/run/kuasar/ns/pid' },
    bindSources: [undefined, '/a', '/b'],
  });
  assert.deepEqual(guestSpec(cri, shared).linux?.namespaces?.[0], { type: 'pid', path: '/run/kuasar/ns/pid' });
  assert.throws(() => guestSpec(cri, { ...shared, namespaces: { ipc: '/i', uts: '/u', pid: null } }), /pinned no PID namespace/);
});

test('emptyDir volumes are known by kubelet’s path; other paths are not; share paths map into the guest', () => {
  assert.equal(emptyDirName('/var/lib/kubelet/pods/u1/volumes/kubernetes.io~empty-dir/cache', 'u1'), 'cache');
  assert.equal(emptyDirName('/var/lib/kubelet/pods/u1/volumes/kubernetes.io~empty-dir/cache/', 'u1'), 'cache');
  assert.equal(emptyDirName('/var/lib/kubelet/pods/u2/volumes/kubernetes.io~empty-dir/cache', 'u1'), undefined, "another pod's emptyDir");
  assert.equal(emptyDirName('/var/lib/kubelet/pods/u1/volumes/kubernetes.io~empty-dir/..', 'u1'), undefined);
  assert.equal(emptyDirName('/var/lib/kubelet/pods/u1/volumes/kubernetes.io~configmap/cfg', 'u1'), undefined);
  const share = { hostDir: '/state/vmm/p1/shared', guestMount: '/run/kuasar/shared' };
  assert.equal(guestPathIn(share, '/state/vmm/p1/shared/containers/c1/rootfs'), '/run/kuasar/shared/containers/c1/rootfs');
  assert.throws(() => guestPathIn(share, '/state/vmm/p1/agent'), /not inside the share/);
});

test("the pod's interfaces and routes as ip(8) shows them: Ethernet links with global addresses; routes the kernel did not make", () => {
  const addr = JSON.stringify([
    {
      ifname: 'lo',
      link_type: 'loopback',
      address: '00:00:00:00:00:00',
      mtu: 65536,
      addr_info: [{ family: 'inet', local: '127.0.0.1', prefixlen: 8, scope: 'host' }],
    },
    {
      ifname: 'eth0',
      link_type: 'ether',
      address: '0a:58:0a:58:00:05',
      mtu: 1450,
      addr_info: [
        { family: 'inet', local: '10.88.0.5', prefixlen: 16, scope: 'global' },
        { family: 'inet6', local: 'fe80::858:aff:fe58:5', prefixlen: 64, scope: 'link' },
      ],
    },
    { ifname: 'kuasar-tap0', link_type: 'ether', address: 'aa:bb:cc:dd:ee:ff', mtu: 1450, addr_info: [] },
  ]);
  const interfaces = parseInterfaces(addr);
  assert.deepEqual(interfaces, [{ name: 'eth0', mac: '0a:58:0a:58:00:05', mtu: 1450, addresses: ['10.88.0.5/16'], tap: 'kuasar-tap0' }]);
  const routes = JSON.stringify([
    { dst: 'default', gateway: '10.88.0.1', dev: 'eth0', flags: [] },
    { dst: '10.88.0.0/16', dev: 'eth0', protocol: 'kernel', scope: 'link', prefsrc: '10.88.0.5', flags: [] },
    { dst: '10.99.0.0/16', gateway: '10.88.0.254', dev: 'eth0', flags: [] },
    { dst: '192.168.0.0/24', dev: 'other0', flags: [] },
  ]);
  assert.deepEqual(parseRoutes(routes, 4, interfaces), [
    { destination: 'default', gateway: '10.88.0.1', device: 'eth0', family: 4 },
    { destination: '10.99.0.0/16', gateway: '10.88.0.254', device: 'eth0', family: 4 },
  ]);
  assert.deepEqual(tapCommands(interfaces), [
    'tuntap add dev kuasar-tap0 mode tap',
    'link set dev kuasar-tap0 mtu 1450',
    'link set dev kuasar-tap0 up',
  ]);
  assert.deepEqual(redirectCommands(interfaces), [
    'qdisc add dev eth0 ingress',
    'filter add dev eth0 parent ffff: protocol all u32 match u8 0 0 action mirred egress redirect dev kuasar-tap0',
    'qdisc add dev kuasar-tap0 ingress',
    'filter add dev kuasar-tap0 parent ffff: protocol all u32 match u8 0 0 action mirred egress redirect dev eth0',
  ]);
});

test('the KVM probe runs once per boot of the host: a later start reads its answer, a changed QEMU probes again', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'kuasar-probe-'));
  try {
    // A stand-in QEMU that counts its runs and exits as QEMU does when the firmware ran.
    const qemu = join(dir, 'qemu');
    writeFileSync(qemu, `#!/bin/sh\necho run >> ${join(dir, 'runs')}\nexit 3\n`);
    chmodSync(qemu, 0o755);
    const runs = () => readFileSync(join(dir, 'runs'), 'utf8').split('\n').filter(Boolean).length;
    const first = await probeAccelOncePerBoot(qemu, 'kvm', join(dir, 'probe'), 5_000);
    assert.equal(first.works, true);
    assert.equal(first.cached, false);
    const second = await probeAccelOncePerBoot(qemu, 'kvm', join(dir, 'probe'), 5_000);
    assert.deepEqual([second.works, second.cached, runs()], [true, true, 1]);
    writeFileSync(join(dir, 'probe', 'kvm-probe.json'), '{not json');
    assert.equal(
      (await probeAccelOncePerBoot(qemu, 'kvm', join(dir, 'probe'), 5_000)).cached,
      false,
      'an unreadable record is probed again',
    );
    const other = join(dir, 'qemu2');
    writeFileSync(other, '#!/bin/sh\necho "no KVM here" >&2\nexit 1\n');
    chmodSync(other, 0o755);
    const changed = await probeAccelOncePerBoot(other, 'kvm', join(dir, 'probe'), 5_000);
    assert.deepEqual(changed, { works: false, reason: 'no KVM here', cached: false });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
