// The initramfs's /init, a busybox sh script. It loads the modules listed in MODULE_ORDER_FILE,
// mounts the root image read-only, moves /dev into it and switch_roots into the agent (or into
// `kuasar.init=<path>`, for debugging and tests). Arguments after `--` on the kernel command line
// reach /init as "$@" and are passed on. Any failure prints one `kuasar-init:` line on the console
// and powers the VM off: a guest that cannot start must end, never hang.
import { ROOT_DEVICE } from './layout.js';

/** The agent, as the root image holds it. */
export const AGENT_INIT = ['/usr/bin/node', '/usr/lib/kuasar/agent.mjs'] as const;

/** The file in the initramfs that lists the modules to load, one file name a line, in load order. */
export const MODULE_ORDER_FILE = '/lib/modules/load-order';

/** The busybox applets /init uses, linked in the initramfs's /bin. */
export const INIT_APPLETS = ['sh', 'mount', 'umount', 'insmod', 'switch_root', 'poweroff', 'sleep'] as const;

export const INIT_SCRIPT = `#!/bin/sh
# kuasar guest initramfs (written by kuasar image build).
export PATH=/bin

fail() {
  echo "kuasar-init: $*, powering off"
  poweroff -f
  # Without ACPI poweroff cannot work: exiting panics the kernel, and panic=-1 makes it reboot.
  exit 1
}

mount -t proc proc /proc || fail "mounting /proc failed"
mount -t sysfs sysfs /sys || fail "mounting /sys failed"
mount -t devtmpfs devtmpfs /dev || fail "mounting /dev failed"

init=""
root=${ROOT_DEVICE}
read -r cmdline < /proc/cmdline
set -f
for arg in $cmdline; do
  case "$arg" in
    kuasar.init=*) init=\${arg#kuasar.init=} ;;
    kuasar.root=*) root=\${arg#kuasar.root=} ;;
  esac
done
set +f

while read -r module; do
  insmod "/lib/modules/$module" || fail "loading kernel module $module failed"
done < ${MODULE_ORDER_FILE}

# The disk appears when virtio_blk has probed it; give it up to five seconds.
tries=0
while [ ! -b "$root" ]; do
  tries=$((tries + 1))
  [ "$tries" -le 100 ] || fail "no root disk $root"
  sleep 0.05
done

mount -t squashfs -o ro "$root" /newroot || fail "mounting the root image $root failed"
mount -o move /dev /newroot/dev || fail "moving /dev into the root image failed"

read -r uptime _ < /proc/uptime
umount /proc /sys
if [ -n "$init" ]; then
  [ -e "/newroot$init" ] || fail "kuasar.init=$init is not in the root image"
  echo "kuasar-init: root image mounted at \${uptime}s, starting $init"
  exec switch_root /newroot "$init" "$@"
fi
echo "kuasar-init: root image mounted at \${uptime}s, starting the agent"
exec switch_root /newroot ${AGENT_INIT.join(' ')} "$@"
`;
