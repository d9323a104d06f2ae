#!/usr/bin/env bash
# Installs what kuasar-ts needs on a Debian 12 machine, as root. Idempotent: safe to run again.
#
# containerd 2.x is only in Debian's unstable suite. We add unstable with a low pin priority so
# that nothing else is upgraded from it, and take containerd alone from there. gVisor's runsc
# for the appkernel kind comes from bookworm-backports, asked for by name the same way. The
# mirror is read from this machine's own apt source entry rather than written here.
set -euo pipefail

if [ "$(id -u)" != 0 ]; then
  echo "setup-host: must run as root" >&2
  exit 1
fi

export DEBIAN_FRONTEND=noninteractive

# The first Debian (non-security) mirror this machine already uses, in either source format.
debian_mirror() {
  local uri
  uri=$(grep -hE '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null \
        | awk '{for (i = 2; i <= NF; i++) print $i}' | grep -v -- '-security' | head -n 1 || true)
  if [ -z "$uri" ] && [ -f /etc/apt/sources.list ]; then
    uri=$(awk '$1 == "deb" && $0 !~ /security/ {for (i = 2; i <= NF; i++) if ($i ~ /^(https?|file):/) {print $i; exit}}' \
          /etc/apt/sources.list)
  fi
  [ -n "$uri" ] || { echo "setup-host: no Debian mirror found in the apt sources" >&2; exit 1; }
  echo "$uri"
}

unstable_list=/etc/apt/sources.list.d/kuasar-unstable.sources
unstable_pin=/etc/apt/preferences.d/kuasar-unstable
if [ ! -f "$unstable_list" ]; then
  cat > "$unstable_list" <<SRC
Types: deb
URIs: $(debian_mirror)
Suites: unstable
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
fi
# Backports are never installed unless asked for by name (the suite says so itself).
backports_list=/etc/apt/sources.list.d/kuasar-bookworm-backports.sources
if [ ! -f "$backports_list" ]; then
  cat > "$backports_list" <<SRC
Types: deb
URIs: $(debian_mirror)
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
fi
cat > "$unstable_pin" <<'PIN'
# Only packages asked for explicitly (containerd/unstable) come from unstable.
Package: *
Pin: release a=unstable
Pin-Priority: 50
PIN

apt_stamp=/var/lib/apt/periodic/kuasar-updated
if [ ! -f "$apt_stamp" ] || [ -n "$(find "$apt_stamp" -mmin +360)" ] || ! apt-cache policy containerd | grep -q unstable \
   || ! apt-cache policy runsc | grep -q bookworm-backports; then
  apt-get update -qq
  mkdir -p "$(dirname "$apt_stamp")" && touch "$apt_stamp"
fi

# Installs those of the packages named that are not installed yet.
install_missing() {
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] || apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

# gcc and libc6-dev compile the pause program of the local pause image (src/devenv/images.ts).
# catatonit holds the PID namespace of runc pods that share one (src/linux/pid-holder.ts).
# crun: the runc kind's OCI runtime where its self-test passes at kuasard's start (src/kinds/runc/runtime-choice.ts).
base_packages=(runc crun iproute2 util-linux containernetworking-plugins busybox-static umoci ca-certificates gcc libc6-dev catatonit)
install_missing "${base_packages[@]}"

# The vmm kind: QEMU runs each pod's VM; `kuasar image build` reads kernel modules (kmod's
# modinfo), unpacks the kernel package (dpkg-deb) and packs the root image (squashfs-tools);
# GNU cpio reads the builder's initramfs archives back in a unit test.
# xz unpacks the kernel from Debian's compressed image.
install_missing qemu-system-x86 kmod squashfs-tools cpio xz-utils
# shellcheck checks the Kubernetes node installer's script (test/unit/kubernetes-manifests.test.ts);
# systemd-analyze (systemd) checks the unit `kuasar install` writes (test/e2e/install.test.ts).
install_missing shellcheck systemd

containerd_major=$(containerd --version 2>/dev/null | awk '{print $3}' | sed 's/^v//' | cut -d. -f1 || true)
if [ "${containerd_major:-0}" -lt 2 ]; then
  apt-get install -y -qq --no-install-recommends containerd/unstable
fi
# gVisor's runsc for the appkernel kind: the 2024-07-29 release as bookworm-backports builds it,
# with the Go it was written for (1.22). bookworm's own (2022) lacks the systrap platform;
# unstable's build of the same release (Go 1.26) dies at random in its sentry ("running on
# goroutine N (task goroutine ... is 0)"), a pipe loop within seconds, and breaks ptrace.
case "$(dpkg-query -W -f='${Version}' runsc 2>/dev/null || true)" in
  *~bpo12*) ;;
  *) apt-get install -y -qq --no-install-recommends --allow-downgrades runsc/bookworm-backports ;;
esac
# The distribution's service would hold /run/containerd; kuasar-ts runs its own instances.
if command -v systemctl >/dev/null && systemctl is-active -q containerd 2>/dev/null; then
  systemctl disable --now containerd || true
fi

containerd --version
runc --version | head -n 1
crun --version | sed -n 1p
# sed, not head: runsc writes its lines one by one and dies of SIGPIPE once head has gone.
runsc --version | sed -n 1p
qemu-system-x86_64 --version | sed -n 1p
