"""Each node's configuration files: containerd, CNI, kubelet, kube-proxy; and the Corefile.

The first node's files are in STATE, a further node's in its own directory
(``NodeSpec.state``), so every node has its own containerd root, kubelet root, pod
logs and CNI address pool.
"""

from __future__ import annotations

import json
import os
import shutil

from localnode.layout import (
    CLUSTER_CIDR,
    COREDNS_HEALTH,
    COREDNS_READY,
    GATEWAY,
    KUBE_PROXY_HEALTH,
    KUBELET_HEALTH,
    KUBELET_PORT,
    NODE,
    PKI,
    SERVICE_CIDR,
    STATE,
    NodeSpec,
)


def write_cni(spec: NodeSpec) -> None:
    """The bridge plugin on the node's bridge, host-local addresses from its /24."""
    net_d = spec.state / "net.d"
    net_d.mkdir(parents=True, exist_ok=True)
    start = spec.pod_subnet.rsplit(".", 1)[0] + ".10"
    (net_d / "10-scalelab.conflist").write_text(json.dumps({
        "cniVersion": "1.0.0", "name": "scalelab",
        "plugins": [{
            "type": "bridge", "bridge": spec.bridge, "isGateway": True,
            "isDefaultGateway": False, "ipMasq": False, "hairpinMode": True,
            "ipam": {"type": "host-local", "dataDir": str(spec.state / "cni-ipam"),
                     "ranges": [[{"subnet": spec.pod_subnet, "gateway": spec.ip,
                                  "rangeStart": start}]],
                     # the pod and Service ranges, and nothing beyond this machine
                     "routes": [{"dst": CLUSTER_CIDR}, {"dst": SERVICE_CIDR}]},
        }],
    }, indent=1))


def write_containerd(spec: NodeSpec, pause_image: str) -> None:
    runc = os.environ.get("SCALELAB_NODE_RUNC") or shutil.which("runc") or "runc"
    (spec.state / "containerd.toml").write_text(f"""\
version = 2
root = "{spec.state / 'containerd'}"
state = "{spec.run / 'containerd'}"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
                    "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper",
                    "io.containerd.tracing.processor.v1.otlp"]
[grpc]
  address = "{spec.containerd_sock}"
[plugins."io.containerd.internal.v1.opt"]
  path = "{spec.state / 'containerd-opt'}"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{pause_image}"
  stream_server_address = "127.0.0.1"
  # Kubelet asks for oom_score_adj -998 on sandboxes; lowering it needs
  # CAP_SYS_RESOURCE, which this machine's root lacks (runc: "failed to update
  # /proc/self/oom_score_adj: Permission denied"). Keep it no lower than containerd's.
  restrict_oom_score_adj = true
  enable_selinux = false
  # network namespaces under our state directory, not /run/netns
  netns_mounts_under_state_dir = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        BinaryName = "{runc}"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{spec.state / 'net.d'}"
""")


def write_kubelet(spec: NodeSpec) -> None:
    # Pods resolve through CoreDNS only; no search domain or resolver of the host's.
    (spec.state / "resolv.conf").write_text(f"nameserver {GATEWAY}\n")
    (spec.state / "kubelet.yaml").write_text(json.dumps({
        "apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration",
        "address": spec.ip, "port": KUBELET_PORT, "readOnlyPort": 0,
        # loopback: the node's own (a further node's namespace has its own)
        "healthzBindAddress": KUBELET_HEALTH.split(":")[0],
        "healthzPort": int(KUBELET_HEALTH.split(":")[1]),
        "authentication": {"anonymous": {"enabled": False}, "webhook": {"enabled": True},
                           "x509": {"clientCAFile": str(PKI / "ca.crt")}},
        "authorization": {"mode": "Webhook"},
        "tlsCertFile": str(PKI / f"kubelet{spec.suffix}.crt"),
        "tlsPrivateKeyFile": str(PKI / f"kubelet{spec.suffix}.key"),
        "cgroupDriver": "cgroupfs",
        # Two kubelets on one machine: each its own cgroup tree (<root>/kubepods).
        **({} if spec.first else {"cgroupRoot": spec.cgroup_root}),
        "containerRuntimeEndpoint": f"unix://{spec.containerd_sock}",
        "clusterDNS": [GATEWAY], "clusterDomain": "cluster.local",
        "resolvConf": str(spec.state / "resolv.conf"),
        "failSwapOn": False,
        # The images are imported, never pulled: keep them whatever the disk says.
        "imageGCHighThresholdPercent": 100, "imageGCLowThresholdPercent": 99,
        "evictionHard": {"memory.available": "100Mi", "nodefs.available": "1%",
                         "imagefs.available": "1%", "nodefs.inodesFree": "1%"},
        "serializeImagePulls": False,
        "podLogsDir": str(spec.state / "pod-logs"),
        "syncFrequency": "10s",
    }, indent=1))


def write_kube_proxy(spec: NodeSpec) -> None:
    (spec.state / "kube-proxy.yaml").write_text(json.dumps({
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1", "kind": "KubeProxyConfiguration",
        "clientConnection": {"kubeconfig": str(STATE / "kube-proxy.kubeconfig")},
        "mode": "iptables", "hostnameOverride": spec.name, "clusterCIDR": CLUSTER_CIDR,
        "healthzBindAddress": KUBE_PROXY_HEALTH, "metricsBindAddress": "127.0.0.1:10249",
        # NodePorts on the loopback only: where kind publishes them (kind-config.yaml).
        # The harness reaches the first node's; a further node's are in its namespace.
        "nodePortAddresses": ["127.0.0.0/8"],
        "iptables": {"localhostNodePorts": True, "masqueradeAll": False,
                     "syncPeriod": "10s", "minSyncPeriod": "0s"},
        # 0: leave the host's conntrack settings as they are
        "conntrack": {"maxPerCore": 0, "min": 0, "tcpEstablishedTimeout": "0s",
                      "tcpCloseWaitTimeout": "0s"},
    }, indent=1))


def write_corefile() -> None:
    (STATE / "Corefile").write_text(f"""\
.:53 {{
    bind {GATEWAY}
    ready {COREDNS_READY}
    health {COREDNS_HEALTH}
    errors
    loadbalance
    cache 5
    kubernetes cluster.local in-addr.arpa ip6.arpa {{
        kubeconfig {STATE / 'coredns.kubeconfig'} {NODE}
        pods insecure
        ttl 5
        fallthrough in-addr.arpa ip6.arpa
    }}
}}
""")


def write_node_configs(spec: NodeSpec, pause_image: str) -> None:
    spec.state.mkdir(parents=True, exist_ok=True)
    write_cni(spec)
    write_containerd(spec, pause_image)
    write_kubelet(spec)
    write_kube_proxy(spec)
