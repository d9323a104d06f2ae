// SetupSandbox: once per VM, before any container, the pod's names and files (hostname, hosts,
// resolv.conf under <state>/etc, where the image's /etc symlinks point), its shared directory
// (9p), its pinned IPC and UTS namespaces, its sysctls, and the holder of its PID namespace when
// the containers share one (kuasar-idle, PID 1 of that namespace, reaping its orphans).
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from 'pino';

import { alreadyExists, invalidArgument } from '../../base/errors.js';
import { validateId } from '../../base/ids.js';
import { mount } from '../../linux/libc/mounts.js';
import { sethostname } from '../../linux/libc/namespaces.js';
import { checkHostname, pinPodNamespaces } from '../../linux/namespaces.js';
import { holderPidNamespacePath, startPidNamespaceHolder } from '../../linux/pid-holder.js';
import { applySysctls } from './sandbox-sysctls.js';

export interface SandboxRequest {
  sandboxId: string;
  hostname: string;
  hosts: string;
  resolvConf: string;
  sharedTag: string;
  sharedMountPoint: string;
  sharePidNamespace: boolean;
  sysctls: Record<string, string>;
}

export interface SandboxNamespaces {
  ipc: string;
  uts: string;
  /** Absent unless the pod shares one PID namespace. */
  pid?: string;
}

export interface SandboxOptions {
  /** Where the files and pinned namespaces go (/run/kuasar in the guest). */
  stateDir: string;
  /** The PID namespace holder (kuasar-idle), started in a new PID namespace for a shared one. */
  pidHolder: string;
  /** The agent is the guest's init: the VM's own hostname becomes the pod's too. */
  isGuestInit: boolean;
}

/** Hostname of a pod that gives none: the sandbox id shortened, as container engines do. */
const DEFAULT_HOSTNAME_LENGTH = 12;
/** 9p's largest message over virtio (the kernel caps it at 512000): fewer round trips for container files. */
const NINEP_MSIZE = 512_000;

export class Sandbox {
  private namespaces: SandboxNamespaces | undefined;

  constructor(
    private readonly options: SandboxOptions,
    private readonly log: Logger,
  ) {}

  async setUp(request: SandboxRequest): Promise<SandboxNamespaces> {
    if (this.namespaces) throw alreadyExists('sandbox setup (it is done once per VM)');
    const id = validateId('sandbox', request.sandboxId);
    const hostname = request.hostname || id.slice(0, DEFAULT_HOSTNAME_LENGTH);
    checkHostname(hostname);
    if (request.sharedTag && !path.isAbsolute(request.sharedMountPoint)) {
      throw invalidArgument(`shared mount point ${JSON.stringify(request.sharedMountPoint)} must be an absolute path`);
    }
    await this.writeEtc(hostname, request);
    if (request.sharedTag) await this.mountShared(request.sharedTag, request.sharedMountPoint);
    if (this.options.isGuestInit) sethostname(hostname);
    const pinned = await pinPodNamespaces(path.join(this.options.stateDir, 'ns'), { ipc: true, uts: true, hostname });
    const namespaces: SandboxNamespaces = { ipc: pinned.ipcPath!, uts: pinned.utsPath! };
    applySysctls(request.sysctls, namespaces);
    if (request.sharePidNamespace) {
      const { pidHolder } = this.options;
      const program = { command: [pidHolder], comm: path.basename(pidHolder).slice(0, 15) };
      const holder = await startPidNamespaceHolder({ ipc: namespaces.ipc, uts: namespaces.uts }, undefined, program);
      namespaces.pid = holderPidNamespacePath(holder);
    }
    this.namespaces = namespaces;
    this.log.info({ sandbox: id, hostname, ...namespaces }, 'sandbox set up');
    return namespaces;
  }

  private async writeEtc(hostname: string, request: SandboxRequest): Promise<void> {
    const etc = path.join(this.options.stateDir, 'etc');
    await mkdir(etc, { recursive: true, mode: 0o755 });
    await writeFile(path.join(etc, 'hostname'), `${hostname}\n`);
    if (request.hosts) await writeFile(path.join(etc, 'hosts'), request.hosts);
    if (request.resolvConf) await writeFile(path.join(etc, 'resolv.conf'), request.resolvConf);
  }

  private async mountShared(tag: string, mountPoint: string): Promise<void> {
    await mkdir(mountPoint, { recursive: true });
    // cache=mmap: without a cache mode v9fs maps files read-only, and a shared writable mmap (an
    // SQLite WAL, LMDB) fails with EINVAL on every container's rootfs and volume.
    mount(tag, mountPoint, '9p', 0, `trans=virtio,version=9p2000.L,msize=${NINEP_MSIZE},cache=mmap`);
  }
}
