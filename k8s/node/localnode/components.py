"""The command line of every component, and which of them can run on this machine.

The control plane (etcd, API server, controller-manager, scheduler) and CoreDNS run
once, in the host's namespaces; containerd, kubelet, kube-proxy and kube-router run
once per node, a further node's inside its network namespace (``NodeSpec.enter``).
"""

from __future__ import annotations

import shutil

from localnode.layout import (
    API_PORT,
    BIN,
    ETCD_CLIENT,
    ETCD_PEER,
    GATEWAY,
    KUBE_ROUTER_HEALTH_PORT,
    NODE,
    NODE_LABEL,
    NODE_MONITOR_GRACE_S,
    PKI,
    SERVICE_CIDR,
    STATE,
    TOLERATION_S,
    NodeSpec,
)

CONTROL_PLANE = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler")
PER_NODE = ("containerd", "kubelet", "kube-proxy", "kube-router")
# containerd gets an unreachable loopback proxy: an image that was not imported
# fails at once instead of being pulled from a registry.
NO_PULL_ENV = {"HTTP_PROXY": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9",
               "NO_PROXY": ""}


def etcd_bin() -> str:
    """etcd of the release Kubernetes pins (build.sh builds it last), else the one on
    PATH (Debian's 3.4.23: the API server's storage needs nothing newer)."""
    own = BIN / "etcd"
    return str(own) if own.exists() else shutil.which("etcd") or "etcd"


def kubeconfig_flags(name: str) -> list[str]:
    path = STATE / f"{name}.kubeconfig"
    return [f"--kubeconfig={path}", f"--authentication-kubeconfig={path}",
            f"--authorization-kubeconfig={path}"]


def control_plane_commands() -> dict[str, list[str]]:
    p = PKI
    return {
        "etcd": [
            etcd_bin(), "--name", NODE, "--data-dir", str(STATE / "etcd"),
            "--listen-client-urls", ETCD_CLIENT, "--advertise-client-urls", ETCD_CLIENT,
            "--listen-peer-urls", ETCD_PEER, "--initial-advertise-peer-urls", ETCD_PEER,
            "--initial-cluster", f"{NODE}={ETCD_PEER}", "--logger", "zap", "--log-level", "warn"],
        "kube-apiserver": [
            str(BIN / "kube-apiserver"), f"--advertise-address={GATEWAY}",
            f"--bind-address={GATEWAY}", f"--secure-port={API_PORT}",
            f"--etcd-servers={ETCD_CLIENT}", f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--authorization-mode=Node,RBAC",
            # PodSecurity is on by default; named so the manifests' reliance on it is explicit.
            "--enable-admission-plugins=NodeRestriction,PodSecurity",
            # The tolerations DefaultTolerationSeconds gives pods that name none.
            f"--default-not-ready-toleration-seconds={TOLERATION_S}",
            f"--default-unreachable-toleration-seconds={TOLERATION_S}",
            f"--client-ca-file={p / 'ca.crt'}",
            f"--tls-cert-file={p / 'apiserver.crt'}",
            f"--tls-private-key-file={p / 'apiserver.key'}",
            f"--kubelet-client-certificate={p / 'apiserver-kubelet-client.crt'}",
            f"--kubelet-client-key={p / 'apiserver-kubelet-client.key'}",
            f"--kubelet-certificate-authority={p / 'ca.crt'}",
            "--kubelet-preferred-address-types=InternalIP",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={p / 'sa.pub'}",
            f"--service-account-signing-key-file={p / 'sa.key'}",
            "--profiling=false", "--v=0"],
        "kube-controller-manager": [
            str(BIN / "kube-controller-manager"),
            *kubeconfig_flags("controller-manager"),
            "--bind-address=127.0.0.1", "--leader-elect=false", f"--cluster-name={NODE}",
            f"--service-account-private-key-file={p / 'sa.key'}", f"--root-ca-file={p / 'ca.crt'}",
            f"--cluster-signing-cert-file={p / 'ca.crt'}",
            f"--cluster-signing-key-file={p / 'ca.key'}",
            f"--node-monitor-grace-period={NODE_MONITOR_GRACE_S}s",
            "--use-service-account-credentials=true", "--profiling=false", "--v=0"],
        "kube-scheduler": [
            str(BIN / "kube-scheduler"), *kubeconfig_flags("scheduler"),
            "--bind-address=127.0.0.1", "--leader-elect=false", "--profiling=false", "--v=0"],
        "coredns": [str(BIN / "coredns"), "-conf", str(STATE / "Corefile")],
    }


def node_commands(spec: NodeSpec) -> dict[str, list[str]]:
    """The node's components, each under its own name plus the node's suffix."""
    enter, s = spec.enter(), spec.state
    return {f"{name}{spec.suffix}": [*enter, *argv] for name, argv in {
        "containerd": ["containerd", "--config", str(s / "containerd.toml")],
        "kubelet": [
            str(BIN / "kubelet"), f"--config={s / 'kubelet.yaml'}",
            f"--kubeconfig={s / 'kubelet.kubeconfig'}", f"--hostname-override={spec.name}",
            f"--node-ip={spec.ip}", f"--root-dir={s / 'kubelet'}",
            f"--node-labels={NODE_LABEL}={spec.role}", "--v=0"],
        "kube-proxy": [str(BIN / "kube-proxy"), f"--config={s / 'kube-proxy.yaml'}", "--v=0"],
        # The NetworkPolicy firewall only. Its health server, which up waits on, listens
        # on every address (v2.1.0 has no bind option): the network keeps it to loopback.
        "kube-router": [
            str(BIN / "kube-router"), "--run-firewall=true", "--run-router=false",
            "--run-service-proxy=false", f"--kubeconfig={STATE / 'kube-router.kubeconfig'}",
            f"--hostname-override={spec.name}", f"--service-cluster-ip-range={SERVICE_CIDR}",
            f"--health-port={KUBE_ROUTER_HEALTH_PORT}", "--metrics-port=0",
            "--iptables-sync-period=10s", "--v=1"],
    }.items()}


def policy_engine() -> str | None:
    """Why the node will enforce no NetworkPolicy, or None when kube-router can run."""
    if not (BIN / "kube-router").exists():
        return f"no kube-router in {BIN} (make node-binaries builds it)"
    if not shutil.which("ipset"):
        return "no ipset on PATH for kube-router (apt-get install ipset)"
    return None
