import assert from 'node:assert/strict';
import { test } from 'node:test';
import { create } from '@bufbuild/protobuf';
import { anyPack } from '@bufbuild/protobuf/wkt';
import { NamespaceMode, PodSandboxConfigSchema } from '../../src/api/cri/runtime/v1/api_pb.js';
import { Code, RuntimeError } from '../../src/base/errors.js';
import type { PodSpec } from '../../src/base/model.js';
import { podFiles, podHostname } from '../../src/base/pod-files.js';
import { podSpec } from '../../src/devenv/pod-spec.js';
import { checkHostname } from '../../src/linux/namespaces.js';
import { podContainerSpec, type PodLayout } from '../../src/kinds/runc/container-spec.js';
import { podDirPaths } from '../../src/oci-kind/pod-dir.js';
import type { LinuxNamespace } from '../../src/oci/spec.js';
import { decodePodSandboxConfig, podSpecFromConfig } from '../../src/services/pod-config.js';
import { packAny } from '../../src/services/wkt.js';

const host = { hostname: 'node1', hosts: '10.0.0.1 node1\n', resolvConf: 'nameserver 10.0.0.53\n' };

function pod(overrides: Partial<PodSpec> = {}): PodSpec {
  return podSpec({ uid: 'u1', hostname: 'web-0', logDirectory: '/var/log/pods/x', ...overrides });
}

test("a PodSandboxConfig in containerd's Any decodes into a PodSpec", () => {
  const config = create(PodSandboxConfigSchema, {
    metadata: { name: 'web', namespace: 'prod', uid: 'abc', attempt: 2 },
    hostname: 'web-0',
    logDirectory: '/var/log/pods/prod_web_abc',
    dnsConfig: { servers: ['10.96.0.10'], searches: ['prod.svc.cluster.local'], options: ['ndots:5'] },
    labels: { app: 'web' },
    linux: {
      cgroupParent: '/kubepods/pod-abc',
      sysctls: { 'net.ipv4.ip_forward': '1' },
      securityContext: { namespaceOptions: { network: NamespaceMode.NODE, pid: NamespaceMode.CONTAINER, ipc: NamespaceMode.POD } },
    },
  });
  // containerd sends the bare type name, without the type.googleapis.com/ prefix; both are read.
  const spec = podSpecFromConfig(decodePodSandboxConfig(packAny(PodSandboxConfigSchema, config), 's1'));
  assert.deepEqual(decodePodSandboxConfig(anyPack(PodSandboxConfigSchema, config), 's1'), config);
  assert.equal(spec.name, 'web');
  assert.equal(spec.namespace, 'prod');
  assert.equal(spec.attempt, 2);
  assert.equal(spec.hostNetwork, true);
  assert.equal(spec.hostIpc, false);
  assert.equal(spec.pidMode, 'container');
  assert.equal(spec.cgroupParent, '/kubepods/pod-abc');
  assert.deepEqual(spec.dns, { servers: ['10.96.0.10'], searches: ['prod.svc.cluster.local'], options: ['ndots:5'] });
  assert.deepEqual(spec.sysctls, { 'net.ipv4.ip_forward': '1' });
  assert.deepEqual(spec.labels, { app: 'web' });
});

test("the pod's size is kubelet's pod resources plus the overhead; unset or unlimited figures, or an overhead alone, count as no limit", () => {
  const size = (linux: Record<string, unknown>) => podSpecFromConfig(create(PodSandboxConfigSchema, { linux })).resources;
  assert.deepEqual(size({}), { cpuQuotaUs: 0, cpuPeriodUs: 0, memoryLimitBytes: 0 });
  assert.deepEqual(
    size({
      resources: { cpuPeriod: 100_000n, cpuQuota: 150_000n, memoryLimitInBytes: 256n << 20n },
      overhead: { cpuQuota: 25_000n, memoryLimitInBytes: 64n << 20n },
    }),
    { cpuQuotaUs: 175_000, cpuPeriodUs: 100_000, memoryLimitBytes: 320 * 1024 * 1024 },
  );
  assert.deepEqual(
    size({ resources: { cpuPeriod: 100_000n, cpuQuota: -1n, memoryLimitInBytes: 1n << 30n } }),
    { cpuQuotaUs: 0, cpuPeriodUs: 0, memoryLimitBytes: 1 << 30 },
    'a quota of -1 is no CPU limit (and its period says nothing)',
  );
  assert.deepEqual(
    size({ overhead: { cpuPeriod: 100_000n, cpuQuota: 25_000n, memoryLimitInBytes: 64n << 20n } }),
    { cpuQuotaUs: 0, cpuPeriodUs: 0, memoryLimitBytes: 0 },
    'an overhead without limits of the pod is no size',
  );
});

test("a pod with its own network gets containerd's unprivileged port and ping sysctls, unless it sets them", () => {
  const spec = (sysctls: Record<string, string>, network: NamespaceMode) =>
    podSpecFromConfig(create(PodSandboxConfigSchema, { linux: { sysctls, securityContext: { namespaceOptions: { network } } } })).sysctls;
  assert.deepEqual(spec({ 'kernel.sem': '1 2 3 4' }, NamespaceMode.POD), {
    'net.ipv4.ip_unprivileged_port_start': '0',
    'net.ipv4.ping_group_range': '0 2147483647',
    'kernel.sem': '1 2 3 4',
  });
  assert.equal(
    spec({ 'net.ipv4.ip_unprivileged_port_start': '1024' }, NamespaceMode.POD)['net.ipv4.ip_unprivileged_port_start'],
    '1024',
    "the pod's own value wins",
  );
  assert.deepEqual(spec({}, NamespaceMode.NODE), {}, "none on the node's network");
});

test("a pod user namespace is refused with InvalidArgument naming it; the node's is accepted", () => {
  const withUserns = (mode: NamespaceMode) =>
    create(PodSandboxConfigSchema, {
      linux: {
        securityContext: { namespaceOptions: { usernsOptions: { mode, uids: [{ hostId: 100000, containerId: 0, length: 65536 }] } } },
      },
    });
  assert.throws(
    () => podSpecFromConfig(withUserns(NamespaceMode.POD)),
    (err: unknown) => err instanceof RuntimeError && err.code === Code.InvalidArgument && /userns_options mode POD/.test(err.message),
  );
  assert.doesNotThrow(() => podSpecFromConfig(withUserns(NamespaceMode.NODE)));
});

test('missing, foreign or corrupt sandbox options are InvalidArgument', () => {
  const invalid = (err: unknown) => err instanceof RuntimeError && err.code === Code.InvalidArgument;
  assert.throws(() => decodePodSandboxConfig(undefined, 's1'), invalid);
  assert.throws(() => decodePodSandboxConfig({ typeUrl: 'runtime.v1.Other', value: new Uint8Array() } as never, 's1'), invalid);
  assert.throws(
    () => decodePodSandboxConfig({ typeUrl: 'runtime.v1.PodSandboxConfig', value: new Uint8Array([0xff, 0xff, 0xff]) } as never, 's1'),
    invalid,
  );
});

test("pod files: DNS from the pod config, the node's hosts, the pod hostname", () => {
  const files = podFiles(
    pod({ dns: { servers: ['10.96.0.10', '10.96.0.11'], searches: ['a.local', 'b.local'], options: ['ndots:5'] } }),
    host,
  );
  assert.equal(files.hostname, 'web-0\n');
  assert.equal(files.resolvConf, 'search a.local b.local\nnameserver 10.96.0.10\nnameserver 10.96.0.11\noptions ndots:5\n');
  assert.equal(files.hosts, host.hosts, "containerd copies the node's /etc/hosts for every pod");
});

test("pod files: a pod without a hostname gets the node's, on any network", () => {
  for (const hostNetwork of [true, false]) {
    const files = podFiles(pod({ hostNetwork, hostname: '' }), host);
    assert.equal(files.hostname, 'node1\n');
    assert.equal(podHostname(pod({ hostNetwork, hostname: '' }), host), 'node1');
    assert.equal(files.hosts, host.hosts);
  }
});

test("pod files: no DNS config means the node's resolv.conf, an empty one an empty file", () => {
  assert.equal(podFiles(pod({ dns: null }), host).resolvConf, host.resolvConf);
  assert.equal(podFiles(pod({ dns: { servers: [], searches: [], options: [] } }), host).resolvConf, '');
  assert.equal(podFiles(pod({ dns: { servers: ['1.1.1.1'], searches: [], options: [] } }), host).resolvConf, 'nameserver 1.1.1.1\n');
});

test("hostnames: the kernel's 64-byte limit and nothing else", () => {
  const invalid = (err: unknown) => err instanceof RuntimeError && err.code === Code.InvalidArgument;
  for (const name of ['a'.repeat(64), 'Create-PodSandbox.With_Odd!Chars', 'é'.repeat(32)])
    assert.doesNotThrow(() => checkHostname(name), name);
  assert.throws(
    () => checkHostname('a'.repeat(65)),
    (err: unknown) => invalid(err) && /hostname "a{65}" is 65 bytes long/.test((err as Error).message),
  );
  assert.throws(() => checkHostname(`${'é'.repeat(32)}x`), /65 bytes/, 'bytes are counted, not characters');
  assert.throws(() => checkHostname('a\0b'), invalid);
});

const layout = (p: PodSpec): PodLayout => ({
  pod: p,
  netnsPath: '/var/run/netns/cni-1',
  ipcPath: p.hostIpc ? null : '/run/k/runc/s1/ns/ipc',
  utsPath: p.hostNetwork ? null : '/run/k/runc/s1/ns/uts',
  pidPath: p.pidMode === 'pod' ? '/proc/4242/ns/pid' : null,
  files: podDirPaths('/run/k/runc/s1'),
  shmDir: '/run/k/runc/s1/shm',
});

const criSpec = () => ({
  ociVersion: '1.2.0',
  hostname: 'web-0',
  root: { path: 'rootfs' },
  process: { args: ['sh'], user: { uid: 0, gid: 0 }, cwd: '/' },
  mounts: [
    { destination: '/proc', type: 'proc', source: 'proc' },
    { destination: '/dev/shm', type: 'tmpfs', source: 'shm', options: ['nosuid'] },
  ],
  linux: {
    cgroupsPath: '/k8s.io/c1',
    namespaces: [
      { type: 'pid', path: '/proc/0/ns/pid' },
      { type: 'ipc', path: '/proc/0/ns/ipc' },
      { type: 'uts' },
      { type: 'mount' },
      { type: 'network' },
    ] as LinuxNamespace[],
  },
});

test("a container joins the pod's pinned namespaces and sees the pod's files", () => {
  const spec = podContainerSpec(criSpec(), '/run/k/runc/s1/containers/c1/rootfs', layout(pod()));
  assert.equal(spec.root?.path, '/run/k/runc/s1/containers/c1/rootfs');
  assert.equal(spec.hostname, undefined);
  const ns = Object.fromEntries(spec.linux!.namespaces!.map((n) => [n.type, n.path]));
  assert.deepEqual(ns, {
    pid: undefined,
    mount: undefined,
    ipc: '/run/k/runc/s1/ns/ipc',
    uts: '/run/k/runc/s1/ns/uts',
    network: '/var/run/netns/cni-1',
  });
  const mounts = Object.fromEntries(spec.mounts!.map((m) => [m.destination, m.source]));
  assert.equal(mounts['/etc/hosts'], '/run/k/runc/s1/etc/hosts');
  assert.equal(mounts['/etc/resolv.conf'], '/run/k/runc/s1/etc/resolv.conf');
  assert.equal(mounts['/etc/hostname'], '/run/k/runc/s1/etc/hostname');
  assert.equal(mounts['/dev/shm'], '/run/k/runc/s1/shm');
  assert.equal(spec.mounts!.filter((m) => m.destination === '/dev/shm').length, 1);
  assert.equal((spec.linux as { cgroupsPath: string }).cgroupsPath, '/k8s.io/c1');
});

test("a container's own /etc files and /dev/shm bind win over the pod's; a read-only root gets them read-only", () => {
  const own = (destination: string) => ({
    destination,
    type: 'bind',
    source: `/kubelet${destination}`,
    options: ['rbind', 'rprivate', 'rw'],
  });
  const base = criSpec();
  // As CRI writes them: a mount of the container config replaces the default at its destination.
  const withOwn = {
    ...base,
    root: { path: 'rootfs', readonly: true },
    mounts: [...base.mounts.filter((m) => m.destination !== '/dev/shm'), own('/etc/hosts'), own('/dev/shm')],
  };
  const spec = podContainerSpec(withOwn, '/r', layout(pod()));
  const byDestination = Object.fromEntries(spec.mounts!.map((m) => [m.destination, m]));
  assert.equal(byDestination['/etc/hosts']?.source, '/kubelet/etc/hosts');
  assert.equal(byDestination['/dev/shm']?.source, '/kubelet/dev/shm');
  assert.equal(spec.mounts!.filter((m) => m.destination === '/dev/shm').length, 1);
  assert.equal(byDestination['/etc/resolv.conf']?.source, '/run/k/runc/s1/etc/resolv.conf');
  assert.ok(byDestination['/etc/resolv.conf']?.options?.includes('ro'), 'read-only with a read-only root');
  assert.ok(byDestination['/etc/hostname']?.options?.includes('ro'));
  const writable = podContainerSpec(criSpec(), '/r', layout(pod())).mounts!.find((m) => m.destination === '/etc/hostname');
  assert.ok(writable?.options?.includes('rw'), 'writable with a writable root');
});

test("a host-network pod's container keeps the host network and UTS namespaces", () => {
  const spec = podContainerSpec(criSpec(), '/r', layout(pod({ hostNetwork: true, hostIpc: true, pidMode: 'node' })));
  assert.deepEqual(spec.linux!.namespaces!.map((n) => n.type).sort(), ['mount']);
});

test("a container of a pod that shares its PID namespace joins the holder's", () => {
  const spec = podContainerSpec(criSpec(), '/r', layout(pod({ pidMode: 'pod' })));
  const pid = spec.linux!.namespaces!.filter((n) => n.type === 'pid');
  assert.deepEqual(pid, [{ type: 'pid', path: '/proc/4242/ns/pid' }], "CRI's /proc/0 path is replaced, not kept beside it");
  assert.throws(
    () => podContainerSpec(criSpec(), '/r', { ...layout(pod({ pidMode: 'pod' })), pidPath: null }),
    (err: unknown) => err instanceof RuntimeError && err.code === Code.Internal,
  );
});

test("pod sysctls go into every container's spec; the container's own entries win", () => {
  const base = criSpec();
  const withOwn = { ...base, linux: { ...base.linux, sysctl: { 'net.ipv4.ip_forward': '0' } } };
  const sysctls = { 'net.ipv4.ip_forward': '1', 'kernel.shm_rmid_forced': '1' };
  const spec = podContainerSpec(withOwn, '/r', layout(pod({ sysctls })));
  assert.deepEqual(spec.linux!.sysctl, { 'net.ipv4.ip_forward': '0', 'kernel.shm_rmid_forced': '1' });
  const plain = podContainerSpec(criSpec(), '/r', layout(pod()));
  assert.equal(Object.hasOwn(plain.linux!, 'sysctl'), false, 'no empty sysctl table is added');
});
