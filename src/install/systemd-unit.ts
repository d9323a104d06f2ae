// The systemd unit `kuasar install` writes for kuasard. Each setting below is there for a reason
// of kuasard's own, told next to it in the unit, so that an operator reading the file on a node
// learns why.
import { KUASARD_NODE_FLAGS } from './kuasard-node.js';

export const UNIT_NAME = 'kuasard.service';
/** The unit's first line: how `kuasar uninstall` knows the file is the one install wrote. */
export const UNIT_MARKER = '# Written by `kuasar install`; `kuasar uninstall` removes it.';
/** The target whose `.wants` directory `systemctl enable` links the unit into (its [Install] section). */
export const WANTED_BY = 'multi-user.target';
/** systemd stops kuasard after this; kuasard's own shutdown gives up after 10 s (cli/kuasard.ts). */
const STOP_TIMEOUT_S = 15;
/** kuasard sends WATCHDOG=1 at half of it, from its event loop. */
export const WATCHDOG_S = 30;

export interface UnitInput {
  /** The node binary that runs kuasard. */
  node: string;
  /** kuasard's entry point (dist/src/cli/kuasard.js). */
  kuasard: string;
  /** kuasard's configuration file. */
  config: string;
}

/**
 * The unit file's text. The paths go into ExecStart as they are, so they must be plain: systemd
 * would split one with white space, and expand `%` and `$` in it.
 */
export function renderUnit({ node, kuasard, config }: UnitInput): string {
  for (const path of [node, kuasard, config]) {
    if (!/^\/[A-Za-z0-9/._+@:,-]*$/.test(path)) {
      throw new Error(`${JSON.stringify(path)} cannot go into a systemd unit as it is: use a path of letters, digits and / . _ + @ : , -`);
    }
  }
  return `${UNIT_MARKER}
[Unit]
Description=kuasar-ts sandboxer: containerd's sandbox controller and Task API for kuasar's pod kinds
# containerd asks the sandboxers about its pods as it starts: kuasard serves by then (it tells
# systemd it is ready once every controller socket listens).
Before=containerd.service
After=local-fs.target network.target

[Service]
Type=notify
NotifyAccess=main
# ${KUASARD_NODE_FLAGS.join(' ')}: V8 settings that keep an idle kuasard's private memory
# low (small young generation, no optimizing compiler, a collection after each burst of calls;
# the reasons and figures are in src/install/kuasard-node.ts).
ExecStart=${node} ${KUASARD_NODE_FLAGS.join(' ')} ${kuasard} --config ${config}
# Pods, their processes (runc inits, gVisor sandboxes, QEMU) and the fd keeper that holds
# containerd's task connections must outlive kuasard: a restart ends the daemon alone, and its
# next run takes them back.
KillMode=process
Restart=always
RestartSec=2s
WatchdogSec=${WATCHDOG_S}s
TimeoutStopSec=${STOP_TIMEOUT_S}s
# As containerd's own unit: the processes kuasard starts get cgroups of their own, many
# descriptors are open per pod, and the OOM killer should pick a container before the daemon.
Delegate=yes
LimitNOFILE=infinity
TasksMax=infinity
OOMScoreAdjust=-999

[Install]
WantedBy=${WANTED_BY}
`;
}
