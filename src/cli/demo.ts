// `kuasar demo`: a private containerd 2.x and kuasard, one pod per working kind driven through
// CRI as kubelet would, the containers' output, and a clean teardown.
import { ContainerState } from '../cri/client.js';
import { criLogText, readContainerLog } from '../cri/log.js';
import { startEnvironment } from '../devenv/environment.js';
import { diffHost, snapshotHost } from '../devenv/leaks.js';
import { containerConfig, containerLogPath } from '../devenv/pods.js';
import { helloWorkload } from '../devenv/workloads.js';
import { renderKuasardConfig } from '../devenv/config.js';

const say = (line: string) => process.stdout.write(`${line}\n`);
const ms = (since: bigint) => `${Number((process.hrtime.bigint() - since) / 1_000_000n)} ms`;

export async function runDemo(): Promise<void> {
  const before = snapshotHost();
  // Every kind "auto": kuasard serves those that can run here (kuasar doctor tells why not).
  const env = await startEnvironment({
    kuasardConfig: (paths) => renderKuasardConfig(paths, 'auto'),
    onProgress: (message) => say(`  · ${message}`),
  });
  try {
    kinds: for (const [kind, handler] of Object.entries(env.handlers.kuasar)) {
      for (const hostNetwork of [false, true]) {
        const network = hostNetwork ? 'host network' : `CNI bridge ${env.subnet.cidr}`;
        say(`\n▶ ${kind} pod on the ${network} (CRI handler ${handler})`);
        const pod = env.podConfig({ name: `demo-${kind}${hostNetwork ? '-host' : ''}`, hostNetwork });
        const started = process.hrtime.bigint();
        const run = await env.cri.runtime.runPodSandbox({ config: pod, runtimeHandler: handler }).catch((err: Error) => {
          // A kind whose checks failed here: its handler says why (src/services/refusing-controller.ts).
          if (/is not served by kuasard/.test(err.message)) return err;
          throw err;
        });
        if (run instanceof Error) {
          say(`  skipped: ${run.message}`);
          continue kinds;
        }
        const { podSandboxId } = run;
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
