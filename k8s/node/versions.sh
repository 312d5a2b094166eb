# Sourced by build.sh and node.sh: the pinned releases and the cache they key.
# Kubernetes 1.33 is the last minor line whose kubelet starts on cgroup v1 without
# an opt-out (1.35 refuses it by default), and this machine's kubelet cgroups are v1.
KUBE_VERSION=v1.33.13
KUBE_MAJOR=1
KUBE_MINOR=33
COREDNS_VERSION=v1.12.3
KUBE_ROUTER_VERSION=v2.1.0  # k8s/node/kube-router/go.mod
SCALELAB_KUBE_CACHE="${SCALELAB_KUBE_CACHE:-/var/cache/scalelab/kube}"
KUBE_CACHE_DIR="$SCALELAB_KUBE_CACHE/$KUBE_VERSION"
SCALELAB_IMAGE_CACHE="${SCALELAB_IMAGE_CACHE:-/var/cache/scalelab/images}"
IMAGE_CACHE_DIR="$SCALELAB_IMAGE_CACHE"
# Images the node builds (images.sh) and imports into containerd. The lab image
# keeps the tag the manifests use; docker.io/library/ is how containerd spells it.
PAUSE_IMAGE=localhost/scalelab/pause:$KUBE_VERSION
REDIS_IMAGE=localhost/scalelab/redis:bookworm
BASE_IMAGE=localhost/scalelab/base:bookworm
LAB_IMAGE="docker.io/library/${IMAGE:-scalelab:dev}"
