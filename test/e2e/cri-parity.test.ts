// CRI inputs as containerd's own runc handler takes them: the same pod and container configs run
// on the baseline handler and on kuasar-runc in one test run, and what a container sees of its
// pod (hostname, /etc files and how they are mounted, sysctls) must be the same on both. The
// inputs are unlike the project's own habits: critest's long capitalised pod names with no
// hostname, empty and full DNS configs, port mappings, hostnames at the kernel's limit and past
// it, no cgroup parent or log directory. Every pod is removed and must leave nothing behind.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { hostname as nodeHostname } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { create } from '@bufbuild/protobuf';
import {
  DNSConfigSchema,
  LinuxContainerConfigSchema,
  MountSchema,
  NamespaceMode,
  PortMappingSchema,
  Protocol,
  type ContainerConfig,
  type PodSandboxConfig,
} from '../../src/api/cri/runtime/v1/api_pb.js';
import { Code, RuntimeError } from '../../src/base/errors.js';
import { startEnvironment, type Environment } from '../../src/devenv/environment.js';
import { diffHost, NO_LEAKS, snapshotHost } from '../../src/devenv/leaks.js';
import { runPod, startRunning, type PodRun } from '../../src/devenv/pod-runs.js';
import { containerConfig } from '../../src/devenv/pods.js';
import { untilAnswered } from '../../src/devenv/retry.js';
import { run as runTool } from '../../src/devenv/exec.js';
import { isMountPoint, mountsAt } from '../../src/linux/mountinfo.js';

/**
 * What a container sees of its pod, one fact a line: every line must be the same on both
 * handlers. Mounts are named by destination, read-only or not, and file system type.
 */
const PROBE = [
  'echo "hostname=$(hostname)"',
  'echo "HOSTNAME=$HOSTNAME"',
  'echo "--- /etc/hostname"; cat /etc/hostname',
  'echo "--- /etc/hosts"; cat /etc/hosts',
  'echo "--- /etc/resolv.conf"; cat /etc/resolv.conf',
  'echo "--- mounts"',
  `awk '$5 ~ /^\\/(etc\\/(hostname|hosts|resolv\\.conf)|dev\\/shm)$/ { for (i = 7; $i != "-"; i++); split($6, o, ","); print $5, o[1], $(i + 1) }' /proc/self/mountinfo | sort`,
  'echo "--- sysctls"; cd /proc/sys; cat net/core/somaxconn kernel/shm_rmid_forced net/ipv4/ip_unprivileged_port_start net/ipv4/ping_group_range kernel/domainname',
].join('\n');

interface ParityCase {
  name: string;
  pod: (env: Environment) => PodSandboxConfig;
  /** Changes to the probing container's config. */
  container?: (config: ContainerConfig, env: Environment) => void;
  /** A fact the compared output must show (beyond being the same on both handlers). */
  expect?: (seen: string) => void;
}

/** 80 characters with capitals, dots and dashes, like critest's `create-PodSandbox-for-container-<uuid>`. */
const longPodName = (): string => `Create.PodSandbox-for-Container-${randomUUID()}`.padEnd(80, '-X');

const HOSTNAME_64 = `Host-64.${'x'.repeat(55)}Z`;
const HOSTNAME_65 = `${HOSTNAME_64}z`;

const cases: ParityCase[] = [
  {
    name: "an 80-character capitalised pod name with no hostname, in a long namespace: the node's hostname",
    pod: (env) => {
      const pod = env.podConfig({ name: longPodName() });
      pod.hostname = '';
      pod.metadata!.namespace = `Kube-Namespace.${'n'.repeat(90)}-End`;
      return pod;
    },
    expect: (seen) => assert.match(seen, new RegExp(`^hostname=${nodeHostname()}$`, 'm')),
  },
  {
    name: 'an empty DNS config: an empty resolv.conf',
    pod: (env) => Object.assign(env.podConfig({ name: 'dns-empty' }), { dnsConfig: create(DNSConfigSchema, {}) }),
    expect: (seen) => assert.match(seen, /--- \/etc\/resolv\.conf\n--- mounts/),
  },
  {
    name: 'a DNS config with servers, searches and options',
    pod: (env) =>
      Object.assign(env.podConfig({ name: 'dns-full' }), {
        dnsConfig: create(DNSConfigSchema, {
          servers: ['10.96.0.10', '2001:db8::53'],
          searches: ['Team.svc.cluster.local', 'svc.cluster.local'],
          options: ['ndots:5', 'timeout:2'],
        }),
      }),
    expect: (seen) => assert.match(seen, /^nameserver 2001:db8::53$/m),
  },
  {
    name: 'port mappings, pod sysctls, labels and annotations with unusual keys and values',
    pod: (env) => {
      const pod = env.podConfig({ name: 'ports-and-more', labels: { 'app.kubernetes.io/name': 'Web', 'empty-value': '' } });
      pod.portMappings = [
        create(PortMappingSchema, { protocol: Protocol.TCP, containerPort: 8080, hostPort: 0 }),
        create(PortMappingSchema, { protocol: Protocol.UDP, containerPort: 53 }),
      ];
      pod.annotations = { 'kubernetes.io/config.source': 'api', long: 'v'.repeat(4096), 'multi-line': 'a\nb' };
      pod.linux!.sysctls = { 'net.core.somaxconn': '2048', 'kernel.shm_rmid_forced': '1', 'kernel.domainname': 'Example.org' };
      return pod;
    },
    expect: (seen) => assert.match(seen, /--- sysctls\n2048\n1\n0\n0\s+2147483647\nExample\.org\n/),
  },
  {
    name: "an explicit hostname of 64 bytes, the kernel's limit",
    pod: (env) => Object.assign(env.podConfig({ name: 'hostname-64' }), { hostname: HOSTNAME_64 }),
    expect: (seen) => assert.match(seen, new RegExp(`^hostname=${HOSTNAME_64.replace(/\./g, '\\.')}$`, 'm')),
  },
  {
    name: 'no cgroup parent and no log directory',
    pod: (env) => {
      const pod = env.podConfig({ name: 'bare' });
      pod.linux!.cgroupParent = '';
      pod.logDirectory = '';
      return pod;
    },
  },
  {
    name: "the node's IPC and PID namespaces: the node's /dev/shm",
    pod: (env) => {
      const pod = env.podConfig({ name: 'host-ipc-pid' });
      pod.linux!.securityContext!.namespaceOptions!.ipc = NamespaceMode.NODE;
      pod.linux!.securityContext!.namespaceOptions!.pid = NamespaceMode.NODE;
      return pod;
    },
    expect: (seen) => assert.match(seen, /^\/dev\/shm rw tmpfs$/m),
  },
  {
    name: "a host-network pod with no hostname: the node's name and files",
    pod: (env) => env.podConfig({ name: 'host-net', hostNetwork: true }),
    expect: (seen) => assert.match(seen, new RegExp(`^hostname=${nodeHostname()}$`, 'm')),
  },
  {
    name: "a read-only root with the container's own /etc/hosts: the pod's files read-only, the container's file kept",
    pod: (env) => env.podConfig({ name: 'own-hosts' }),
    container: (config, env) => {
      config.linux = create(LinuxContainerConfigSchema, { securityContext: { readonlyRootfs: true } });
      config.mounts = [create(MountSchema, { containerPath: '/etc/hosts', hostPath: join(env.paths.dir, 'own-hosts'), readonly: true })];
    },
    expect: (seen) => {
      assert.match(seen, /^10\.1\.2\.3\tkubelet-managed$/m);
      assert.match(seen, /^\/etc\/resolv\.conf ro /m);
    },
  },
];

describe("CRI parity: kuasar-runc sees CRI inputs as containerd's runc handler does", () => {
  let env: Environment;

  before(async () => {
    env = await startEnvironment();
    await writeFile(join(env.paths.dir, 'own-hosts'), '10.1.2.3\tkubelet-managed\n');
  });

  after(async () => {
    await env?.stop();
  });

  /** Both handlers' state: runc's per-container directories, kuasard's sandboxes and runc root. */
  const watched = () => [join(env.paths.runcRoot, 'k8s.io'), env.paths.kuasarState, `${env.paths.kuasarState}/runc.oci`];

  /** Runs the probe in a container of the pod on `handler`; the pod must leave nothing behind. */
  async function probe(
    handler: string,
    parity: ParityCase,
    pod: PodSandboxConfig,
  ): Promise<{ seen: string; info: Record<string, unknown> }> {
    let seen = '';
    let info: Record<string, unknown> = {};
    const { leaks } = await runPod(env, handler, pod, watched(), async (run: PodRun) => {
      const config = containerConfig({ name: 'probe', image: env.images.busybox, command: ['sh', '-c', 'exec sleep 3600'] });
      parity.container?.(config, env);
      const { containerId } = await startRunning(env, run, config);
      const result = await env.cri.runtime.execSync({ containerId, cmd: ['sh', '-c', PROBE], timeout: 30n });
      assert.equal(result.exitCode, 0, Buffer.from(result.stderr).toString());
      seen = Buffer.from(result.stdout).toString();
      const status = await env.cri.runtime.podSandboxStatus({ podSandboxId: run.podId, verbose: true });
      info = JSON.parse(status.info['info'] ?? '{}') as Record<string, unknown>;
    });
    assert.deepEqual(leaks, NO_LEAKS, `the pod on ${handler} left nothing behind`);
    return { seen, info };
  }

  for (const parity of cases) {
    it(parity.name, async () => {
      // One config for both (run one after the other): CRI refuses a second live pod of one name.
      const pod = parity.pod(env);
      const baseline = await probe(env.handlers.baseline, parity, pod);
      const kuasar = await probe(env.handlers.kuasar['runc']!, parity, pod);
      assert.equal(kuasar.seen, baseline.seen, 'the container sees the same on both handlers');
      parity.expect?.(kuasar.seen);
      // inspectp: the pod's config as CRI recorded it, the same on both (but for the sysctls
      // containerd's controller adds to a pod's own map: the probe compares their effect).
      const withoutSysctls = (config: unknown) => JSON.stringify(config, (key, value: unknown) => (key === 'sysctls' ? undefined : value));
      assert.equal(
        withoutSysctls(kuasar.info['config']),
        withoutSysctls(baseline.info['config']),
        'the verbose status carries the pod config',
      );
      assert.equal(kuasar.info['runtimeType'], baseline.info['runtimeType'], 'and the runtime type of the handler');
    });
  }

  /** RunPodSandbox must fail on both; ours with InvalidArgument naming the field. Nothing may remain. */
  async function refusedByBoth(pod: PodSandboxConfig, field: RegExp): Promise<void> {
    for (const handler of [env.handlers.baseline, env.handlers.kuasar['runc']!]) {
      const before = snapshotHost({ dirs: watched() });
      const attempt = env.cri.runtime.runPodSandbox({ config: pod, runtimeHandler: handler });
      if (handler === env.handlers.baseline) {
        await assert.rejects(attempt, `the baseline refuses it too`);
      } else {
        await assert.rejects(attempt, (err: unknown) => {
          assert.ok(err instanceof RuntimeError, String(err));
          assert.equal(err.code, Code.InvalidArgument, err.message);
          assert.match(err.message, field);
          return true;
        });
      }
      assert.deepEqual(
        diffHost(before, snapshotHost({ dirs: watched() }), { scope: env.scope }),
        NO_LEAKS,
        `a refused pod on ${handler} leaves nothing`,
      );
      assert.deepEqual(
        (await env.cri.runtime.listPodSandbox({})).items.filter((p) => p.metadata?.uid === pod.metadata?.uid),
        [],
      );
    }
  }

  it('refuses a hostname of 65 bytes on both handlers, ours naming the field', async () => {
    await refusedByBoth(
      Object.assign(env.podConfig({ name: 'hostname-65' }), { hostname: HOSTNAME_65 }),
      /hostname "Host-64\.x+Zz" is 65 bytes long/,
    );
  });

  it('refuses a sysctl runc will not set for a pod, though the kernel namespaces it, on both handlers', async () => {
    const pod = env.podConfig({ name: 'shm-next-id' });
    pod.linux!.sysctls = { 'kernel.shm_next_id': '5' };
    await refusedByBoth(pod, /sysctl kernel\.shm_next_id is not namespaced/);
  });

  it("refuses a hostname for a pod on the node's network on both handlers", async () => {
    const pod = env.podConfig({ name: 'host-net-named', hostNetwork: true });
    pod.hostname = 'named';
    await refusedByBoth(pod, /hostname "named": a pod on the node's network/);
  });

  it("shows the runtime handler, the sandboxer and the pod's namespaces in the verbose status (inspectp)", async () => {
    const pod = env.podConfig({ name: 'inspectp' });
    pod.linux!.securityContext!.namespaceOptions!.pid = NamespaceMode.POD;
    const { leaks } = await runPod(env, env.handlers.kuasar['runc']!, pod, watched(), async (run) => {
      const { info } = await env.cri.runtime.podSandboxStatus({ podSandboxId: run.podId, verbose: true });
      const parsed = JSON.parse(info['info'] ?? '{}') as {
        pid: number;
        processStatus: string;
        runtimeHandler: string;
        sandboxer: string;
        netNamespaceClosed: boolean;
        config: { metadata: { name: string; uid: string } };
        sandboxMetadata: { Metadata: { ID: string; NetNSPath: string } };
        namespaces: Record<string, string>;
      };
      assert.equal(parsed.runtimeHandler, env.handlers.kuasar['runc']);
      assert.equal(parsed.sandboxer, env.handlers.kuasar['runc']);
      assert.equal(parsed.processStatus, 'running');
      assert.equal(parsed.netNamespaceClosed, false);
      assert.ok(parsed.pid > 0, 'the PID namespace holder stands for the pod');
      assert.deepEqual(parsed.config.metadata, { name: pod.metadata!.name, uid: pod.metadata!.uid, namespace: pod.metadata!.namespace });
      assert.equal(parsed.sandboxMetadata.Metadata.ID, run.podId);
      assert.deepEqual(Object.keys(parsed.namespaces).sort(), ['ipc', 'network', 'pid', 'uts']);
      assert.equal(parsed.namespaces['network'], parsed.sandboxMetadata.Metadata.NetNSPath);
      assert.equal(parsed.namespaces['pid'], `/proc/${parsed.pid}/ns/pid`);
      for (const kind of ['ipc', 'uts'])
        assert.ok(await isMountPoint(parsed.namespaces[kind]!), `the pod's ${kind} namespace is pinned where the status says`);
    });
    assert.deepEqual(leaks, NO_LEAKS);
  });

  it('a kuasard stopped with no pod leaves no mount of its own; with a pod left, it keeps what the pod needs', async () => {
    const kindDir = join(env.paths.kuasarState, 'runc');
    const stack = () => mountsAt(kindDir);
    // Mount ids are reused, so the bind is told apart by a flag only it carries: a bind made
    // anew copies the flags of the file system below (no noexec there), a kept one keeps it.
    const mark = () => runTool('mount', ['-o', 'remount,bind,noexec', kindDir]);
    const isMarked = async () => (await stack()).at(-1)?.options.includes('noexec') ?? false;
    assert.equal((await stack()).length, 1, 'kuasard runs with one private bind of its runc directory');

    // With a pod left, the bind its pinned namespaces live below survives the stop.
    const { leaks } = await runPod(
      env,
      env.handlers.kuasar['runc']!,
      env.podConfig({ name: 'outlives-kuasard' }),
      watched(),
      async (run) => {
        await mark();
        await env.restartKuasard();
        assert.equal((await stack()).length, 1);
        assert.ok(await isMarked(), 'the same bind, kept while the pod lives');
        // containerd's controller connection comes back after its reconnect backoff.
        const { status } = await untilAnswered(() => env.cri.runtime.podSandboxStatus({ podSandboxId: run.podId }));
        assert.equal(status?.id, run.podId);
      },
    );
    assert.deepEqual(leaks, NO_LEAKS);

    // With none left, the stop unmounts it: the next run makes a new one, and only one.
    await mark();
    await env.restartKuasard();
    assert.equal((await stack()).length, 1);
    assert.equal(await isMarked(), false, 'the stopped daemon unmounted its bind; the new run made its own');
  });
});
