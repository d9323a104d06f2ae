#!/usr/bin/env bash
# The demo on a fresh Debian 12 machine, as root: installs what it needs, builds, then runs
# `kuasar demo` (a private containerd 2.x + kuasard, pods through CRI, full cleanup).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup-host.sh
npm ci --no-audit --no-fund
npm run build
# The vmm kind's guest image; without it the demo runs every other kind and says why not this one.
node dist/src/cli/kuasar.js image build || echo "demo: the guest image could not be built; no vmm pod this time" >&2
node dist/src/cli/kuasar.js demo
