#!/usr/bin/env bash
# Builds the local node's binaries from the Go module proxy into a cache outside
# the repository, keyed by release, so later bring-ups (and CI on this machine)
# skip the build:
#
#   $SCALELAB_KUBE_CACHE/<release>/bin/   kube-apiserver etcd kube-controller-manager
#                                         kube-scheduler kubelet kube-proxy coredns
#                                         pause kubectl kube-router
#   $SCALELAB_KUBE_CACHE/<release>/build.log   what was built, and how long it took
#
# The Kubernetes binaries come from ./go.mod (its `tool` lines), CoreDNS from
# ./coredns/go.mod, the pause binary from ./pause.c (static, as the upstream
# build/pause image is). A binary already in the cache is not built again; the
# stamp file `complete` is written once all of them are there.
#
# Usage: build.sh [--check]   (--check: exit 0 if the cache is complete, 1 if not)
set -euo pipefail
here="$(cd -- "$(dirname -- "$0")" >/dev/null && pwd)"  # cd prints with CDPATH set
# shellcheck source=k8s/node/versions.sh
. "$here/versions.sh"
bin="$KUBE_CACHE_DIR/bin"

case "${1:-}" in
  "") ;;
  --check) [ -f "$KUBE_CACHE_DIR/complete" ]; exit ;;
  *) echo "build.sh: unknown argument '$1' (usage: build.sh [--check])" >&2; exit 2 ;;
esac

mkdir -p "$bin"
log="$KUBE_CACHE_DIR/build.log"
say() { echo "[$(date -u +%H:%M:%S)] $*" | tee -a "$log"; }
missing() { for b in "$@"; do [ -x "$bin/$b" ] || return 0; done; return 1; }

# In the order the node needs them (the control plane alone is already a layer to
# test against), each its own `go build`: the build cache shares their packages,
# and each lands in the cache as soon as it is linked.
kube_tools=(kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy)
export CGO_ENABLED=0 GOFLAGS="-trimpath -buildvcs=false"
start=$(date +%s)

# The version the binaries report (the same variables upstream's hack/lib/version.sh sets).
ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ldflags+=" -X $pkg.gitVersion=$KUBE_VERSION -X $pkg.gitMajor=$KUBE_MAJOR"
  ldflags+=" -X $pkg.gitMinor=$KUBE_MINOR -X $pkg.gitTreeState=clean"
done

build_tool() {  # build_tool NAME PACKAGE: one tool of ./go.mod into the cache
  [ -x "$bin/$1" ] && return 0
  say "$1: building $2"
  local t0
  t0=$(date +%s)
  (cd "$here" && go build -ldflags "$ldflags" -o "$bin/$1.tmp" "$2")
  mv "$bin/$1.tmp" "$bin/$1"
  say "$1: built in $(( $(date +%s) - t0 )) s"
}
build_kube() { build_tool "$1" "k8s.io/kubernetes/cmd/$1"; }

for tool in "${kube_tools[@]}"; do
  build_kube "$tool"
done

if missing coredns; then
  say "coredns $COREDNS_VERSION: building"
  t0=$(date +%s)
  (cd "$here/coredns" && go build -ldflags "-s -w" -o "$bin/coredns.tmp" .)
  mv "$bin/coredns.tmp" "$bin/coredns"
  say "coredns $COREDNS_VERSION: built in $(( $(date +%s) - t0 )) s"
fi

if missing pause; then
  say "pause: building"
  gcc -Os -static -Wall -Werror -o "$bin/pause.tmp" "$here/pause.c"
  strip "$bin/pause.tmp"
  mv "$bin/pause.tmp" "$bin/pause"
fi

touch "$KUBE_CACHE_DIR/complete"
say "complete: $bin ($(( $(date +%s) - start )) s this run)"
# Not needed to run the node, so after the stamp: until they are here, node.py uses
# the etcd (Debian's) and the kubectl on PATH.
build_tool etcd go.etcd.io/etcd/server/v3  # the release this Kubernetes pins (go.mod)
build_kube kubectl
# NetworkPolicy for the node (kind's own engine needs a kernel feature this machine
# lacks; node.py's docstring says which): kube-router, of which the node runs only
# the firewall. Its own module, as CoreDNS.
if missing kube-router; then
  say "kube-router $KUBE_ROUTER_VERSION: building"
  t0=$(date +%s)
  (cd "$here/kube-router" && go build -ldflags "-s -w" -o "$bin/kube-router.tmp" \
    github.com/cloudnativelabs/kube-router/v2/cmd/kube-router)
  mv "$bin/kube-router.tmp" "$bin/kube-router"
  say "kube-router $KUBE_ROUTER_VERSION: built in $(( $(date +%s) - t0 )) s"
fi
