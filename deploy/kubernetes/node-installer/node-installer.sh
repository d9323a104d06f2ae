#!/bin/bash
# kuasar's node installer: the container of the DaemonSet in deploy/kubernetes/node-installer.yaml.
#
#   install    copies kuasar (Node.js, kuasar's build, its native helpers, the vmm kind's guest
#              image) to the node's /opt/kuasar/<build> (and points /opt/kuasar/current at it),
#              writes the ConfigMap's config.toml to the node's /etc/kuasar/config.toml, runs
#              `kuasar install` on the node, enables and (re)starts kuasard.service, and restarts
#              containerd when its configuration changed; then stays, Ready, until the pod ends.
#   uninstall  `kuasar uninstall` on the node (refused while kuasar's pods run there: the pod
#              then fails and its log says why), stops kuasard, restarts containerd and removes
#              /opt/kuasar; then stays, Ready.
#
# The pod shares the node's PID namespace and is privileged: `nsenter` into PID 1's mount
# namespace runs commands on the node itself, with the node's paths. The node's /opt/kuasar is
# also mounted into the pod (at /host/opt/kuasar), which is how the files get there.
set -euo pipefail

readonly BUNDLE=/opt/kuasar-bundle             # in this image (see Containerfile)
readonly HOST_OPT=/host/opt/kuasar             # the node's /opt/kuasar, mounted
readonly CONFIG=/etc/kuasar-config/config.toml # the ConfigMap, mounted
readonly READY=/run/kuasar-node-installer/installed
build=$(cat "$BUNDLE/BUILD_ID")
readonly build
readonly NODE_DIR="/opt/kuasar/$build"         # the same directory as the node sees it

say() { echo "kuasar-node-installer: $*"; }
on_node() { nsenter --target 1 --mount -- "$@"; }
# kuasar's CLI of the build in directory $1 on the node.
kuasar() {
  local dir=$1
  shift
  on_node "$dir/bin/node" "$dir/lib/dist/src/cli/kuasar.js" "$@"
}
# What a change of asks for a restart of: containerd's and kuasard's configuration, the unit.
fingerprint() { on_node sh -c 'cat "$@" 2>/dev/null | sha256sum' sh "$@"; }

stay() {
  mkdir -p "$(dirname "$READY")"
  touch "$READY"
  say "$1; staying until the pod is deleted"
  trap 'exit 0' TERM INT
  sleep infinity &
  wait
}

install() {
  if [ ! -d "$HOST_OPT/$build" ]; then
    say "copying kuasar build $build to the node's $NODE_DIR"
    rm -rf "$HOST_OPT/.incoming"
    cp -a "$BUNDLE" "$HOST_OPT/.incoming"
    mv "$HOST_OPT/.incoming" "$HOST_OPT/$build"
  fi
  ln -sfn "$build" "$HOST_OPT/current.new"
  mv -T "$HOST_OPT/current.new" "$HOST_OPT/current"

  local containerd_before kuasard_before
  containerd_before=$(fingerprint /etc/containerd/config.toml)
  kuasard_before=$(fingerprint /etc/kuasar/config.toml /etc/systemd/system/kuasard.service)
  on_node mkdir -p /etc/kuasar
  on_node sh -c 'cat > /etc/kuasar/config.toml.new && mv /etc/kuasar/config.toml.new /etc/kuasar/config.toml' < "$CONFIG"
  kuasar "$NODE_DIR" install

  on_node systemctl daemon-reload
  on_node systemctl enable kuasard.service
  if [ "$kuasard_before" != "$(fingerprint /etc/kuasar/config.toml /etc/systemd/system/kuasard.service)" ]; then
    # Pods keep running across the restart (the unit's KillMode=process).
    say 'restarting kuasard'
    on_node systemctl restart kuasard.service
  else
    on_node systemctl start kuasard.service
  fi
  if [ "$containerd_before" != "$(fingerprint /etc/containerd/config.toml)" ]; then
    say 'restarting containerd (its configuration changed)'
    on_node systemctl restart containerd.service
  fi
  # Builds other than the one kuasard now runs from are of no use any more.
  find "$HOST_OPT" -mindepth 1 -maxdepth 1 -type d ! -name "$build" -exec rm -rf {} +
  stay "node installed (build $build)"
}

uninstall() {
  # The build the node runs, which may be older than this image's.
  if [ -e "$HOST_OPT/current" ]; then
    kuasar /opt/kuasar/current uninstall
  else
    say 'kuasar is not on the node: nothing to uninstall'
  fi
  # The unit's file is gone; systemd still knows the running unit until it reloads.
  on_node systemctl stop kuasard.service || true
  on_node systemctl daemon-reload
  on_node systemctl restart containerd.service
  find "$HOST_OPT" -mindepth 1 -maxdepth 1 -exec rm -rf {} +
  stay 'node uninstalled'
}

case "${1:-install}" in
  install) install ;;
  uninstall) uninstall ;;
  *)
    echo "usage: $0 [install|uninstall]" >&2
    exit 2
    ;;
esac
