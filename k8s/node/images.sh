#!/usr/bin/env bash
# Builds the local node's images with no registry at all and writes each as an
# archive that node.py imports into containerd's k8s.io namespace:
#
#   pause    the sandbox image: build.sh's static pause binary alone
#   redis    Debian's redis-server on a debootstrap minbase (stands in for the
#            redis image the manifests pin; the node renders them with this one)
#   scalelab services/Dockerfile built by buildah on a debootstrap base with
#            python3, venv, tini and the CA bundle (as tests/kind/make_base_image.sh)
#
# The debootstrap trees are cached under $SCALELAB_IMAGE_CACHE (they do not change
# with the code); the scalelab image is rebuilt every time (the code does).
# Needs debootstrap, buildah and Debian's package mirror; pip in the build reaches
# PyPI through the host's network (buildah --network host).
#
# Usage: images.sh OUTDIR     (writes OUTDIR/{pause,redis,scalelab}.tar)
set -euo pipefail
# Every $(...) below captures a value: nothing inside one may write a log line to
# standard output (cd does, with CDPATH set; say writes to standard error).
here="$(cd -- "$(dirname -- "$0")" >/dev/null && pwd)"
root="$(cd -- "$here/../.." >/dev/null && pwd)"
# shellcheck source=k8s/node/versions.sh
. "$here/versions.sh"

[ $# -eq 1 ] || { echo "images.sh: usage: images.sh OUTDIR" >&2; exit 2; }
out="$1"
mkdir -p "$out" "$IMAGE_CACHE_DIR"
for tool in debootstrap buildah; do
  command -v "$tool" >/dev/null || { echo "images.sh: no $tool on PATH (apt-get install $tool)" >&2; exit 2; }
done
[ -x "$KUBE_CACHE_DIR/bin/pause" ] || { echo "images.sh: no pause binary: run k8s/node/build.sh" >&2; exit 2; }

say() { echo "[$(date -u +%H:%M:%S)] images: $*" >&2; }
# What a failed or interrupted build leaves: its working containers and scratch files.
scratch="$(mktemp -d)"
containers=()
cleanup() {
  for c in "${containers[@]}"; do buildah rm "$c" >/dev/null 2>&1 || true; done
  rm -rf "$scratch" "$out/tree.tar"
}
trap cleanup EXIT
# Buildah's storage is its own; chroot isolation needs no user namespaces or daemon.
export BUILDAH_ISOLATION=chroot

rootfs() {  # rootfs NAME PACKAGES: a cached debootstrap minbase tree
  local dir="$IMAGE_CACHE_DIR/$1"
  if [ ! -f "$dir/.complete" ]; then
    say "debootstrap $1 ($2)"
    rm -rf "$dir"
    debootstrap --variant=minbase --include="$2" bookworm "$dir" >"$IMAGE_CACHE_DIR/$1.log" 2>&1 \
      || { echo "images.sh: debootstrap $1 failed; see $IMAGE_CACHE_DIR/$1.log" >&2; exit 1; }
    rm -rf "$dir"/var/cache/apt/archives/*.deb "$dir"/var/lib/apt/lists/*
    touch "$dir/.complete"
  fi
  echo "$dir"
}

from_tree() {  # from_tree DIR IMAGE [buildah config args...]: a one-layer image of DIR
  local dir="$1" image="$2" c
  shift 2
  c="$(buildah from --quiet scratch)"
  containers+=("$c")
  tar -C "$dir" --exclude=./.complete -cf "$out/tree.tar" .
  buildah add "$c" "$out/tree.tar" / >/dev/null  # a local tar is unpacked, as ADD does
  rm -f "$out/tree.tar"
  buildah config "$@" "$c"
  buildah commit -q --rm "$c" "$image" >/dev/null
}

archive() {  # archive IMAGE NAME: docker-archive (ctr import keeps the tag)
  rm -f "$out/$2.tar"
  buildah push -q "$1" "docker-archive:$out/$2.tar:$1" >/dev/null
}

started=$(date +%s)

say "pause"
install -m 0755 "$KUBE_CACHE_DIR/bin/pause" "$scratch/pause"
from_tree "$scratch" "$PAUSE_IMAGE" --entrypoint '["/pause"]' --user 65535:65535
archive "$PAUSE_IMAGE" pause

say "redis"
redis_tree="$(rootfs redis redis-server)"
from_tree "$redis_tree" "$REDIS_IMAGE" --cmd '["redis-server"]' --user 999:1000 \
  --workingdir /data
archive "$REDIS_IMAGE" redis

say "scalelab (services/Dockerfile)"
base_tree="$(rootfs python python3,python3-venv,tini,ca-certificates)"
cp /etc/ssl/certs/ca-certificates.crt "$base_tree/etc/ssl/certs/ca-certificates.crt"
from_tree "$base_tree" "$BASE_IMAGE" --env PIP_CERT=/etc/ssl/certs/ca-certificates.crt \
  --cmd '["/bin/bash"]'
buildah bud -q --network host --layers --build-arg "BASE=$BASE_IMAGE" \
  -f "$root/services/Dockerfile" -t "$LAB_IMAGE" "$root" >/dev/null
archive "$LAB_IMAGE" scalelab

say "done in $(( $(date +%s) - started )) s: $out"
