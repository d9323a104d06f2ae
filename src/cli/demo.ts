// `kuasar demo`: a private containerd 2.x and kuasard, one pod per working kind driven through
// CRI as kubelet would, the containers' output, and a clean teardown.
import { ContainerState } from '../cri/client.js';
import { criLogText, readContainerLog } from '../cri/log.js';
import { startEnvironment } from '../devenv/environment.js';
import { diffHost, snapshotHost } from '../devenv/leaks.js';
import { containerConfig, containerLogPath } from '../devenv/pods.js';
import { helloWorkload } from '../devenv/workloads.js';
import { checkImageDir, DEFAULT_IMAGE_DIR } from '../guest/image/layout.js';

const say = (line: string) => process.stdout.write(`${line}\n`);
const ms = (since: bigint) => `${Number((process.hrtime.bigint() - since) / 1_000_000n)} ms`;

export async function runDemo(): Promise<void> {
  const before = snapshotHost();
  const env = await startEnvironment({ onProgress: (message) => say(`  · ${message}`) });
  try {
    for (const [kind, handler] of Object.entries(env.handlers.kuasar)) {
      if (kind === 'vmm') {
        const image = await checkImageDir(DEFAULT_IMAGE_DIR);
        if (!image.complete) {
          say(`\n▶ vmm pods skipped: the guest image lacks ${image.missing.join(', ')}; \`${image.fix}\` makes it`);
          continue;
        }
      }
      for (const hostNetwork of [false, true]) {
        const network = hostNetwork ? 'host network' : `CNI bridge ${env.subnet.cidr}`;
        say(`\n▶ ${kind} pod on the ${network} (CRI handler ${handler})`);
        const pod = env.podConfig({ name: `demo-${kind}${hostNetwork ? '-host' : ''}`, hostNetwork });
        const started = process.hrtime.bigint();
        const { podSandboxId } = await env.cri.runtime.runPodSandbox({ config: pod, runtimeHandler: handler });
        say(`  RunPodSandbox   ${podSandboxId.slice(0, 12)}  ${ms(started)}`);
        const container = containerConfig({ name: 'hello', ...helloWorkload(kind) });
        const { containerId } = await env.cri.runtime.createContainer({ podSandboxId, config: container, sandboxConfig: pod });
        await env.cri.runtime.startContainer({ containerId });
        say(`  StartContainer  ${containerId.slice(0, 12)}  ${ms(started)} after RunPodSandbox began`);
        const status = await env.cri.waitForContainerState(containerId, ContainerState.CONTAINER_EXITED, { timeoutMs: 60_000 });
        say(`  exited with ${status.exitCode}; its CRI log says:`);
        for (const line of criLogText(await readContainerLog(containerLogPath(pod, container)))
          .trimEnd()
          .split('\n')) {
          say(`    | ${line}`);
        }
        await env.cri.runtime.stopPodSandbox({ podSandboxId });
        await env.cri.runtime.removePodSandbox({ podSandboxId });
        say('  pod stopped and removed');
      }
    }
  } finally {
    say('\n  · cleaning up');
    await env.stop();
  }
  const left = Object.entries(diffHost(before, snapshotHost(), { scope: env.scope })).filter(([, items]) => items.length > 0);
  if (left.length === 0) {
    say('done: no mount, process, network namespace, cgroup or link of the demo is left on this machine');
  } else {
    say(`the demo left something behind:\n${JSON.stringify(Object.fromEntries(left), null, 2)}`);
    process.exitCode = 1;
  }
}
