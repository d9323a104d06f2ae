// The host's platform as containerd names it (GOOS/GOARCH style), for Controller.Platform.
import { arch } from 'node:os';
import type { Platform } from '../base/model.js';

const GO_ARCH: Record<string, string> = {
  x64: 'amd64',
  arm64: 'arm64',
  arm: 'arm',
  ia32: '386',
  ppc64: 'ppc64le',
  s390x: 's390x',
  riscv64: 'riscv64',
};

export function hostPlatform(): Platform {
  const nodeArch = arch();
  return { os: 'linux', architecture: GO_ARCH[nodeArch] ?? nodeArch, variant: nodeArch === 'arm64' ? 'v8' : '' };
}
