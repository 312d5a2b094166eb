"""Where everything of the local node is: names, addresses, paths, releases, nodes.

The first node is the host's own network namespace: the control plane, CoreDNS and
the NodePorts on 127.0.0.1 live there, its pods on the bridge ``scalelab0``
(10.244.0.0/24, gateway and node address 10.244.0.1). Every further node is a
network namespace of its own, as kind's node containers are: its kubelet, containerd,
kube-proxy (and kube-router) run in it, its pods on its own bridge and /24 of
10.244.0.0/16, and a veth pair to the host is its only link, with routes on this
machine alone (nothing leads off it: no default route anywhere).
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]  # k8s/node
ROOT = HERE.parents[1]

NODE = "scalelab-node"  # the first Node's name, and the kubeconfig cluster's
CONTEXT = "scalelab-local"  # the context `up` writes into the user's kubeconfig
MAX_NODES = 2
NODE_LABEL = "scalelab/node"  # primary (the first node) or secondary
BRIDGE = "scalelab0"
GATEWAY = "10.244.0.1"
POD_SUBNET = "10.244.0.0/24"
CLUSTER_CIDR = "10.244.0.0/16"  # kind-config.yaml's podSubnet: the overlay's NetworkPolicy names it
SERVICE_CIDR = "10.96.0.0/16"
API_SERVICE_IP = "10.96.0.1"
API_PORT = 6443
KUBELET_PORT = 10250
APISERVER = f"https://{GATEWAY}:{API_PORT}"
ETCD_CLIENT, ETCD_PEER = "http://127.0.0.1:23790", "http://127.0.0.1:23800"
COREDNS_READY = "127.0.0.1:18181"
COREDNS_HEALTH = "127.0.0.1:18080"
KUBE_PROXY_HEALTH = "127.0.0.1:10256"
KUBELET_HEALTH = "127.0.0.1:10248"
KUBE_ROUTER_HEALTH_PORT = 20244  # kube-router's default
NAMESPACE = "scalelab"
LAB_DEPLOYMENTS = ("redis-ledger", "redis-broker", "api", "worker", "beat")
COMMENT = "scalelab-node"  # on every iptables rule of ours outside our own chains
OUR_CHAINS = re.compile(r"^(KUBE-|CNI-|SCALELAB-)")
OUR_IPSETS = re.compile(r"^(inet6:)?(KUBE-|kube-router)")  # kube-router's sets
# What kubelet (setupKernelTunables) and kube-proxy (localhost NodePorts) set; restored at down.
SYSCTLS = ("vm/overcommit_memory", "vm/panic_on_oom", "kernel/panic", "kernel/panic_on_oops",
           "kernel/keys/root_maxkeys", "kernel/keys/root_maxbytes",
           "net/ipv4/conf/all/route_localnet", "net/bridge/bridge-nf-call-iptables")
# How soon a node that stops renewing its lease is NotReady, and how long its pods
# tolerate that (the API server adds these tolerations to every pod that names none):
# the controller-manager's --node-monitor-grace-period (50 s by default) and the API
# server's --default-{not-ready,unreachable}-toleration-seconds (300 by default),
# shortened so a lost node's pods are replaced within a run.
# https://kubernetes.io/docs/reference/command-line-tools-reference/kube-controller-manager/
# https://kubernetes.io/docs/concepts/scheduling-eviction/taint-and-toleration/#taint-based-evictions
NODE_MONITOR_GRACE_S = 30
TOLERATION_S = 10


def versions() -> dict[str, str]:
    """The variables of versions.sh (the one place the releases and caches are named)."""
    names = ("KUBE_VERSION", "COREDNS_VERSION", "KUBE_CACHE_DIR", "IMAGE_CACHE_DIR",
             "PAUSE_IMAGE", "REDIS_IMAGE", "LAB_IMAGE")
    # NUL-separated, and counted: a stray line on standard output fails here, loudly.
    script = f". {shlex.quote(str(HERE / 'versions.sh'))} >&2 && " + " && ".join(
        f'printf "%s\\0" "${n}"' for n in names)
    out = subprocess.run(["bash", "-c", script], check=True, capture_output=True,
                         text=True).stdout
    return dict(zip(names, out.split("\0")[:-1], strict=True))


V = versions()
BIN = Path(V["KUBE_CACHE_DIR"]) / "bin"
STATE = Path(os.environ.get("SCALELAB_NODE_DIR", "/var/lib/scalelab/node"))
RUN = Path(os.environ.get("SCALELAB_NODE_RUN", "/run/scalelab-node"))
PKI, LOGS, IMAGES = STATE / "pki", STATE / "logs", STATE / "images"
PIDFILE, READY = RUN / "supervisor.pid", RUN / "ready"
PIDS = RUN / "pids.json"  # component -> pid, written by the supervisor
NODES_FILE = RUN / "nodes.json"  # what `up` brought up, and each node's isolation
ADMIN_KUBECONFIG = STATE / "admin.kubeconfig"
NETNS_DIR = Path("/run/netns")  # where `ip netns add` pins a namespace


@dataclass(frozen=True)
class NodeSpec:
    """One node: its name, where its processes run, its pods' network, its files."""

    index: int  # 1 for the first node

    @property
    def first(self) -> bool:
        return self.index == 1

    @property
    def name(self) -> str:
        return NODE if self.first else f"{NODE}-{self.index}"

    @property
    def role(self) -> str:
        return "primary" if self.first else "secondary"

    @property
    def suffix(self) -> str:
        """Appended to the names of this node's components, logs and certificates."""
        return "" if self.first else f"-{self.index}"

    @property
    def netns(self) -> str | None:
        return None if self.first else self.name

    @property
    def bridge(self) -> str:
        return f"scalelab{self.index - 1}"

    @property
    def ip(self) -> str:
        """The node's address: its bridge's, as the first node's is GATEWAY."""
        return f"10.244.{self.index - 1}.1"

    @property
    def pod_subnet(self) -> str:
        return f"10.244.{self.index - 1}.0/24"

    @property
    def veth(self) -> str:
        """The host's end of the link to this node's namespace (the other end is eth0)."""
        return f"scalelab-n{self.index}"

    @property
    def transit(self) -> tuple[str, str]:
        """The link's two addresses (host, node) in a /30 of 10.244.255.0/24."""
        base = 4 * (self.index - 2)
        return f"10.244.255.{base + 1}", f"10.244.255.{base + 2}"

    @property
    def state(self) -> Path:
        return STATE if self.first else STATE / self.name

    @property
    def run(self) -> Path:
        return RUN if self.first else RUN / self.name

    @property
    def containerd_sock(self) -> Path:
        return self.run / "containerd" / "containerd.sock"

    @property
    def cgroup_root(self) -> str:
        """Where kubelet puts its pods' cgroups (``<root>/kubepods``)."""
        return "/" if self.first else f"/{self.name}"

    def enter(self) -> list[str]:
        """The argv prefix that runs a command in this node's network namespace. Not
        ``ip netns exec``: it also mounts a new /sys, which would hide the cgroup
        hierarchies kubelet and runc need."""
        return [] if self.netns is None else ["nsenter", f"--net={NETNS_DIR / self.netns}", "--"]


def node_specs(count: int) -> list[NodeSpec]:
    return [NodeSpec(i) for i in range(1, count + 1)]


ALL_NODES = node_specs(MAX_NODES)


def spec_named(name: str) -> NodeSpec | None:
    return next((s for s in ALL_NODES if s.name == name), None)
