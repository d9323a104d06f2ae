#!/usr/bin/env bash
# The whole test suite on a fresh Debian 12 machine, as root: installs what it needs (host
# packages, containerd 2.x, npm packages), checks that src/api matches proto/ and that the code
# passes the formatter and linter (Biome), builds (with the vmm kind's guest image), then runs the unit tests and the end-to-end
# tests against a real containerd.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup-host.sh
npm ci --no-audit --no-fund
bash scripts/check-generated.sh
npm run lint
npm run build
# The vmm kind's guest image (kernel, initramfs, root image), unless an up-to-date one is there.
node dist/src/cli/kuasar.js image build

node --test --test-concurrency=1 dist/test/unit/
node --test --test-concurrency=1 dist/test/e2e/
