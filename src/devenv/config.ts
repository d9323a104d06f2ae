// The configuration files of an environment: containerd's (version 3), the CNI network list,
// and kuasard's. Key names were checked against `containerd config dump` of containerd 2.1.9.
import { stringify } from 'smol-toml';
import { sandboxerName } from '../config/containerd.js';
import type { KindEnabled } from '../config/kind-schema.js';
import { KINDS } from '../kinds/index.js';
import { PAUSE_IMAGE } from './images.js';
import { kuasarSocketPath, type EnvironmentNames, type EnvironmentPaths } from './layout.js';
import type { Subnet } from './network.js';

const CRI_RUNTIME = 'io.containerd.cri.v1.runtime';
const CRI_IMAGES = 'io.containerd.cri.v1.images';
const CRI_SERVICE = 'io.containerd.grpc.v1.cri';
export const CNI_BIN_DIR = '/usr/lib/cni';
/** containerd's own runc handler: the baseline that kuasar's handlers are compared with. */
export const BASELINE_HANDLER = 'runc';

/**
 * Plugins an environment does not need. NRI would listen on the host-wide /var/run/nri/nri.sock
 * (two environments would fight over it); the others are snapshotters and tracing
 * that only slow start-up and fill the log with warnings here.
 */
const DISABLED_PLUGINS = [
  'io.containerd.nri.v1.nri',
  'io.containerd.snapshotter.v1.btrfs',
  'io.containerd.snapshotter.v1.devmapper',
  'io.containerd.snapshotter.v1.blockfile',
  'io.containerd.snapshotter.v1.erofs',
  'io.containerd.snapshotter.v1.zfs',
  'io.containerd.snapshotter.v1.aufs',
  'io.containerd.tracing.processor.v1.otlp',
  'io.containerd.internal.v1.tracing',
];

/**
 * containerd's configuration, without kuasar's tables: those come from `kuasar config
 * containerd` and are appended as they are (this file must not define the same tables).
 */
export function renderContainerdConfig(paths: EnvironmentPaths): string {
  return stringify({
    version: 3,
    root: paths.containerdRoot,
    state: paths.containerdState,
    disabled_plugins: DISABLED_PLUGINS,
    grpc: { address: paths.containerdSocket },
    ttrpc: { address: paths.containerdTtrpcSocket },
    plugins: {
      [CRI_IMAGES]: {
        snapshotter: 'overlayfs',
        // Every image is imported locally before use; a pull would only ever hang.
        image_pull_progress_timeout: '30s',
        pinned_images: { sandbox: PAUSE_IMAGE },
      },
      [CRI_RUNTIME]: {
        // The host refuses oom_score_adj below 0, and CRI asks -998 for pause containers.
        restrict_oom_score_adj: true,
        // Pod network namespaces go under the private state dir instead of the host's /run/netns.
        netns_mounts_under_state_dir: true,
        enable_cdi: false,
        containerd: {
          default_runtime_name: BASELINE_HANDLER,
          runtimes: {
            [BASELINE_HANDLER]: {
              runtime_type: 'io.containerd.runc.v2',
              sandboxer: 'podsandbox',
              options: { BinaryName: 'runc', SystemdCgroup: false, Root: paths.runcRoot },
            },
          },
        },
        cni: { bin_dirs: [CNI_BIN_DIR], conf_dir: paths.cniConfDir, max_conf_num: 1 },
      },
      [CRI_SERVICE]: { stream_server_address: '127.0.0.1', stream_server_port: '0' },
      'io.containerd.internal.v1.opt': { path: paths.optDir },
    },
  });
}

/**
 * One bridge network. The bridge has the gateway address (so the host reaches pods) but pods get
 * no default route and there is no masquerading: pod traffic stays on this host's bridge.
 * containerd sets up the pods' loopback interface itself, so the list holds no loopback plugin.
 */
export function renderCniConfig(paths: EnvironmentPaths, names: EnvironmentNames, subnet: Subnet): string {
  const network = {
    cniVersion: '1.0.0',
    name: names.network,
    plugins: [
      {
        type: 'bridge',
        bridge: names.bridge,
        isGateway: false,
        ipMasq: false,
        hairpinMode: false,
        ipam: {
          type: 'host-local',
          ranges: [[{ subnet: subnet.cidr, gateway: subnet.gateway }]],
          dataDir: paths.cniIpamDir,
        },
      },
    ],
  };
  return `${JSON.stringify(network, null, 2)}\n`;
}

/** The CRI handler that runs `kind`'s pods with io_type "streaming" (see renderStreamingHandlers). */
export const streamingHandlerName = (kind: string): string => `kuasar-${kind}-streaming`;

/**
 * One more CRI runtime handler per kuasar kind, `kuasar-<kind>-streaming`: the same sandboxer
 * as `kuasar-<kind>`, but with io_type = "streaming", so that containerd carries the stdio of
 * its containers over the sandbox's task socket instead of FIFOs. kuasard needs no setting for
 * it: it serves both kinds of stdio on every sandbox. Appended after kuasar's own tables, which
 * define the sandboxers (proxy plugins) these handlers name.
 */
export function renderStreamingHandlers(kinds: readonly string[]): string {
  return kinds
    .map((kind) =>
      [
        `[plugins.'${CRI_RUNTIME}'.containerd.runtimes.'${streamingHandlerName(kind)}']`,
        `  runtime_type = "io.containerd.runc.v2"`,
        `  sandboxer = "${sandboxerName(kind)}"`,
        `  io_type = "streaming"`,
        '',
      ].join('\n'),
    )
    .join('\n');
}

/**
 * kuasard's configuration: every registered kind with its defaults, state under the private
 * directory. Enabled = true by default: a test's kind that cannot run stops kuasard, with why.
 */
export function renderKuasardConfig(paths: EnvironmentPaths, enabled: KindEnabled = true): string {
  return renderKuasardConfigWith({}, enabled)(paths);
}

/**
 * As renderKuasardConfig, with some keys of kinds' tables set (`{ vmm: { stop_timeout_ms: 2000 } }`)
 * and top-level keys from `topLevel` (`metrics_address`), which may depend on the paths.
 */
export function renderKuasardConfigWith(
  overrides: Readonly<Record<string, Record<string, unknown>>>,
  enabled: KindEnabled = true,
  topLevel: (paths: EnvironmentPaths) => Readonly<Record<string, unknown>> = () => ({}),
) {
  return (paths: EnvironmentPaths): string =>
    stringify({
      ...topLevel(paths),
      state_dir: paths.kuasarState,
      log_level: 'debug',
      containerd: { ttrpc_address: paths.containerdTtrpcSocket },
      kinds: Object.fromEntries(
        KINDS.map(({ name }) => [name, { enabled, listen: kuasarSocketPath(paths.dir, name), ...overrides[name] }]),
      ),
    });
}
