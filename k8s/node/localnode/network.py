"""The nodes' network: bridges, a further node's namespace and link, the rule that keeps
pod traffic on this machine, and node loss (cutting a node off the API server).

The host forwards only between the nodes' bridges and links (per-interface
forwarding; the global switch is untouched) and rejects anything else they send.
A further node's namespace has routes to 10.244.0.0/16 and the Service range through
its link to the host, and none beyond: no default route anywhere, no masquerade.
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

from localnode.layout import (
    API_PORT,
    CLUSTER_CIDR,
    COMMENT,
    GATEWAY,
    KUBE_ROUTER_HEALTH_PORT,
    KUBELET_PORT,
    NETNS_DIR,
    SERVICE_CIDR,
    NodeSpec,
)
from localnode.shell import NodeError, run, succeeds

FORWARD_CHAIN = "SCALELAB-NODE"
# Node loss: rules that drop a node's traffic with the API server, in chains of their
# own (an interface match is for INPUT, the outgoing one for OUTPUT).
ISOLATE_IN, ISOLATE_OUT = "SCALELAB-ISOLATE-IN", "SCALELAB-ISOLATE-OUT"


def iptables(spec: NodeSpec | None, *args: str, check: bool = True) -> str:
    """iptables in the host's namespace (``spec`` None or the first node) or a node's."""
    return run(*(spec.enter() if spec else []), "iptables", *args, check=check)


def ensure_rule(spec: NodeSpec | None, chain: str, *rule: str) -> None:
    """Insert ``rule`` first in ``chain`` unless it is there (``-C``'s exit status says)."""
    if not succeeds(*(spec.enter() if spec else []), "iptables", "-C", chain, *rule):
        iptables(spec, "-I", chain, "1", *rule)


def guard_kube_router_health(spec: NodeSpec | None) -> None:
    """kube-router's health server listens on every address: answer on loopback only."""
    ensure_rule(spec, "INPUT", "!", "-i", "lo", "-p", "tcp", "--dport",
                str(KUBE_ROUTER_HEALTH_PORT), "-m", "comment", "--comment", COMMENT, "-j", "DROP")


def host_up(specs: list[NodeSpec]) -> None:
    """The first node's bridge, every further node's link, and the forwarding rule."""
    first = specs[0]
    if not Path(f"/sys/class/net/{first.bridge}").exists():
        run("ip", "link", "add", first.bridge, "type", "bridge")
    run("ip", "addr", "replace", f"{GATEWAY}/24", "dev", first.bridge)
    run("ip", "link", "set", first.bridge, "up")
    for spec in specs[1:]:
        node_up(spec)
    ifaces = [first.bridge, *(s.veth for s in specs[1:])]
    for iface in ifaces:
        # Forwarding for packets that arrive on our interfaces only (a pod -> a Service
        # -> a pod, on this node or another); it goes with the interface at down.
        Path(f"/proc/sys/net/ipv4/conf/{iface}/forwarding").write_text("1")
    iptables(None, "-N", FORWARD_CHAIN, check=False)
    iptables(None, "-F", FORWARD_CHAIN)
    for a in ifaces:
        for b in ifaces:
            iptables(None, "-A", FORWARD_CHAIN, "-i", a, "-o", b, "-j", "ACCEPT")
    for iface in ifaces:
        iptables(None, "-A", FORWARD_CHAIN, "-i", iface, "-j", "REJECT")
        iptables(None, "-A", FORWARD_CHAIN, "-o", iface, "-j", "REJECT")
    guard_kube_router_health(None)
    ensure_rule(None, "FORWARD", "-m", "comment", "--comment", COMMENT, "-j", FORWARD_CHAIN)
    if len(specs) > 1:
        for chain, hook in ((ISOLATE_IN, "INPUT"), (ISOLATE_OUT, "OUTPUT")):
            iptables(None, "-N", chain, check=False)
            iptables(None, "-F", chain)
            ensure_rule(None, hook, "-m", "comment", "--comment", COMMENT, "-j", chain)


def node_up(spec: NodeSpec) -> None:
    """A further node: its namespace, a veth to the host, its bridge, its routes."""
    ns = spec.netns
    assert ns is not None, "the first node is the host's namespace"
    host_end, node_end = spec.transit
    if not (NETNS_DIR / ns).exists():
        run("ip", "netns", "add", ns)
    if not Path(f"/sys/class/net/{spec.veth}").exists():
        run("ip", "link", "add", spec.veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
    run("ip", "addr", "replace", f"{host_end}/30", "dev", spec.veth)
    run("ip", "link", "set", spec.veth, "up")
    # The node's pods through its link; from the first node's address, which the
    # node's pods and kubelet answer through their routes back.
    run("ip", "route", "replace", spec.pod_subnet, "via", node_end, "dev", spec.veth,
        "src", GATEWAY)
    n = ("ip", "-n", ns)
    run(*n, "link", "set", "lo", "up")
    run(*n, "addr", "replace", f"{node_end}/30", "dev", "eth0")
    run(*n, "link", "set", "eth0", "up")
    if not succeeds(*n, "link", "show", spec.bridge):
        run(*n, "link", "add", spec.bridge, "type", "bridge")
    run(*n, "addr", "replace", f"{spec.ip}/24", "dev", spec.bridge)
    run(*n, "link", "set", spec.bridge, "up")
    # Everything of the cluster (other nodes' pods, the control plane, CoreDNS) and
    # the Service range (before kube-proxy's DNAT picks the pod) through the host.
    for dst in (CLUSTER_CIDR, SERVICE_CIDR):
        run(*n, "route", "replace", dst, "via", host_end, "dev", "eth0", "src", spec.ip)
    # The namespace is the node's own: it forwards between its bridge and its link.
    run(*spec.enter(), "sysctl", "-qw", "net.ipv4.ip_forward=1")
    # Bridged pod traffic through iptables (kube-proxy's Services), as kubelet wants.
    run(*spec.enter(), "sysctl", "-qw", "net.bridge.bridge-nf-call-iptables=1", check=False)
    guard_kube_router_health(spec)


def policy_engine_problem() -> str | None:
    """Why kube-network-policies (kind's NetworkPolicy engine) cannot enforce policies on
    this kernel, or None if it could: it needs nftables' ``queue`` expression."""
    table = "scalelab_queue_probe"
    run("nft", "add", "table", "inet", table, check=False)
    try:
        run("nft", "add", "chain", "inet", table, "probe",
            "{ type filter hook postrouting priority 95; policy accept; }")
        rule = subprocess.run(["nft", "add", "rule", "inet", table, "probe", "ip", "daddr",
                               "192.0.2.1", "queue", "num", "100", "bypass"],
                              capture_output=True, text=True, timeout=30)
    finally:
        run("nft", "delete", "table", "inet", table, check=False)
    if rule.returncode == 0:
        return None
    said = (rule.stderr.strip().splitlines() or [""])[0]
    return (f"this kernel has no nftables queue expression (CONFIG_NFT_QUEUE): "
            f"`nft add rule ... queue` says {said!r}")


# --- node loss ---------------------------------------------------------------------------


def cut_rules(spec: NodeSpec) -> list[tuple[str, list[str]]]:
    """The rules that cut ``spec`` off the control plane, both ways: its kubelet,
    kube-proxy and pods to the API server, and the API server to its kubelet."""
    tag = ["-m", "comment", "--comment", f"{COMMENT} isolate {spec.name}", "-j", "DROP"]
    return [
        (ISOLATE_IN, ["-i", spec.veth, "-p", "tcp", "--dport", str(API_PORT), *tag]),
        (ISOLATE_OUT, ["-o", spec.veth, "-p", "tcp", "--sport", str(API_PORT), *tag]),
        (ISOLATE_OUT, ["-o", spec.veth, "-p", "tcp", "--dport", str(KUBELET_PORT), *tag]),
        (ISOLATE_IN, ["-i", spec.veth, "-p", "tcp", "--sport", str(KUBELET_PORT), *tag]),
    ]


def cut(spec: NodeSpec) -> None:
    for chain, rule in cut_rules(spec):
        ensure_rule(None, chain, *rule)


def uncut(spec: NodeSpec) -> None:
    for chain, rule in cut_rules(spec):
        while succeeds("iptables", "-C", chain, *rule):
            iptables(None, "-D", chain, *rule)


def is_cut(spec: NodeSpec) -> bool:
    return any(succeeds("iptables", "-C", chain, *rule) for chain, rule in cut_rules(spec))


def signal_kubelet(pid: int, sig: signal.Signals) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError as exc:
        raise NodeError(f"kubelet (pid {pid}) is not running") from exc
