#!/usr/bin/env python3
"""A single-node Kubernetes cluster on this machine, from the binaries build.sh caches.

The way Kubernetes' own hack/local-up-cluster.sh runs one: every component is a
plain process, here all children of one supervisor (``node.py supervise``), which
``up`` starts detached and ``down`` stops. Stopping it (SIGTERM, SIGINT) drains the
pods, stops the components in reverse order, and removes what they left: container
processes, mounts, network namespaces, veths, the bridge, iptables rules and the
kernel settings kubelet and kube-proxy change. ``leftovers`` lists whatever is left.

    node.py up [--overlay NAME]   start the node (if not running), build and import
                                  the images, apply k8s/overlays/NAME, wait for it
    node.py images                only build the images (skipped when nothing changed)
    node.py down                  stop everything; exit 1 if anything is left
    node.py status | leftovers | kubeconfig

The network stays on this machine. Pods get addresses in 10.244.0.0/24 on the
bridge ``scalelab0`` (gateway 10.244.0.1, which is also where the API server,
kubelet and CoreDNS listen), with routes to the pod and Service ranges only: no
default route, no masquerade. The host forwards only from that bridge back into
it (per-interface forwarding; the global switch is untouched) and rejects
anything else a pod sends. kube-proxy answers NodePorts on 127.0.0.1 only, the
ports the kind cluster maps there. containerd gets an unreachable loopback proxy,
so an image that was not imported fails at once instead of being pulled.

NetworkPolicy: the bridge plugin has no policy engine (kind's kindnet has one).
kind's engine, kube-network-policies, cannot run here: it sends the first packet
of each connection to userspace with nftables' ``queue`` expression, which this
machine's kernel lacks (CONFIG_NFT_QUEUE unset: adding such a rule fails with
ENOENT); ``policy_engine_problem`` checks it. When build.sh has built kube-router
and Debian's ``ipset`` is installed, the node runs kube-router's firewall alone
(``--run-firewall``, no routing, no service proxy: iptables rules and ipsets,
which this kernel has) and enforces NetworkPolicy; otherwise it enforces none, and
the platform's partition fault fails with one line rather than cut nothing.
Everything else the lab's manifests use is enforced.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import re
import shlex
import shutil
import signal
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]

NODE = "scalelab-node"  # the Node's name, and the kubeconfig cluster's
CONTEXT = "scalelab-local"  # the context `up` writes into the user's kubeconfig
BRIDGE = "scalelab0"
GATEWAY = "10.244.0.1"
POD_SUBNET = "10.244.0.0/24"
CLUSTER_CIDR = "10.244.0.0/16"  # kind-config.yaml's podSubnet: the overlay's NetworkPolicy names it
SERVICE_CIDR = "10.96.0.0/16"
API_SERVICE_IP = "10.96.0.1"
APISERVER = f"https://{GATEWAY}:6443"
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
# What kubelet (setupKernelTunables) and kube-proxy (localhost NodePorts) set; restored at down.
SYSCTLS = ("vm/overcommit_memory", "vm/panic_on_oom", "kernel/panic", "kernel/panic_on_oops",
           "kernel/keys/root_maxkeys", "kernel/keys/root_maxbytes",
           "net/ipv4/conf/all/route_localnet", "net/bridge/bridge-nf-call-iptables")
# Start order; down stops them in reverse. kube-router only when it can run (below).
COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler",
              "containerd", "kubelet", "kube-proxy", "kube-router", "coredns")
OUR_IPSETS = re.compile(r"^(inet6:)?(KUBE-|kube-router)")  # kube-router's sets


class NodeError(RuntimeError):
    """The node cannot do what was asked (one line)."""


def versions() -> dict[str, str]:
    """The variables of versions.sh (the one place the releases and caches are named)."""
    names = ("KUBE_VERSION", "COREDNS_VERSION", "KUBE_CACHE_DIR", "IMAGE_CACHE_DIR",
             "PAUSE_IMAGE", "REDIS_IMAGE", "LAB_IMAGE")
    script = f". {shlex.quote(str(HERE / 'versions.sh'))} && " + " && ".join(
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
CONTAINERD_SOCK = RUN / "containerd" / "containerd.sock"
ADMIN_KUBECONFIG = STATE / "admin.kubeconfig"


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] node: {msg}", flush=True)


def run(*argv: str | Path, check: bool = True, timeout: float = 120,
        env: dict[str, str] | None = None, stdin: str | None = None) -> str:
    proc = subprocess.run([str(a) for a in argv], capture_output=True, text=True,
                          timeout=timeout, env=env, input=stdin)
    if check and proc.returncode != 0:
        err = (proc.stderr or proc.stdout).strip().splitlines()
        raise NodeError(f"{Path(str(argv[0])).name} {' '.join(map(str, argv[1:3]))} failed "
                        f"({proc.returncode}): {err[-1] if err else ''}")
    return proc.stdout


def kubectl_bin() -> str:
    """The release's own kubectl once built.sh has it (it comes last), else the one on PATH."""
    own = BIN / "kubectl"
    return str(own) if own.exists() else shutil.which("kubectl") or str(own)


def kubectl(*args: str, timeout: float = 120, stdin: str | None = None,
            check: bool = True) -> str:
    return run(kubectl_bin(), "--kubeconfig", ADMIN_KUBECONFIG, *args, timeout=timeout,
               stdin=stdin, check=check)


def wait_until(what: str, ok: Callable[[], bool], timeout: float,
               alive: Callable[[], str | None] = lambda: None) -> None:
    """Poll ``ok`` until it holds; NodeError after ``timeout`` or when ``alive`` says why not."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if ok():
                return
        except (OSError, NodeError, subprocess.SubprocessError, ValueError):
            pass
        if why := alive():
            raise NodeError(f"waiting for {what}: {why}")
        if time.monotonic() > deadline:
            raise NodeError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.25)


def http_ok(url: str, *, client_cert: bool = False, timeout: float = 2) -> bool:
    ctx: ssl.SSLContext | None = None
    if url.startswith("https"):
        ctx = ssl.create_default_context(cafile=str(PKI / "ca.crt"))
        ctx.check_hostname = False  # the components' own serving certs are self-signed
        ctx.verify_mode = ssl.CERT_NONE
        if client_cert:
            ctx.load_cert_chain(str(PKI / "admin.crt"), str(PKI / "admin.key"))
    try:
        with urllib.request.urlopen(url, timeout=timeout, context=ctx) as r:
            return bool(r.status == 200)
    except (urllib.error.URLError, OSError):
        return False


# --- certificates and kubeconfigs --------------------------------------------------------


@dataclass(frozen=True)
class Cert:
    name: str
    subject: str
    usage: str  # extendedKeyUsage
    sans: str = ""


CERTS = (
    Cert("apiserver", "/CN=kube-apiserver", "serverAuth",
         f"IP:{GATEWAY},IP:{API_SERVICE_IP},IP:127.0.0.1,DNS:kubernetes,DNS:kubernetes.default,"
         "DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,DNS:localhost"),
    Cert("apiserver-kubelet-client", "/CN=kube-apiserver-kubelet-client", "clientAuth"),
    Cert("admin", "/O=system:masters/CN=scalelab-admin", "clientAuth"),
    Cert("controller-manager", "/CN=system:kube-controller-manager", "clientAuth"),
    Cert("scheduler", "/CN=system:kube-scheduler", "clientAuth"),
    Cert("kubelet-client", f"/O=system:nodes/CN=system:node:{NODE}", "clientAuth"),
    Cert("kubelet", f"/CN={NODE}", "serverAuth", f"IP:{GATEWAY},DNS:{NODE}"),
    Cert("kube-proxy", "/CN=system:kube-proxy", "clientAuth"),
    Cert("coredns", "/CN=scalelab-node:coredns", "clientAuth"),
    Cert("kube-router", "/CN=scalelab-node:kube-router", "clientAuth"),
)
KUBECONFIGS = {"admin": "admin", "controller-manager": "controller-manager",
               "scheduler": "scheduler", "kubelet": "kubelet-client",
               "kube-proxy": "kube-proxy", "coredns": "coredns", "kube-router": "kube-router"}


def make_pki() -> None:
    """A CA, a certificate per component, the service-account key pair (kept across runs)."""
    PKI.mkdir(parents=True, exist_ok=True)
    ca_crt, ca_key = PKI / "ca.crt", PKI / "ca.key"
    if not ca_crt.exists():
        run("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
            "-nodes", "-keyout", ca_key, "-out", ca_crt, "-days", "3650",
            "-subj", "/CN=scalelab-node-ca")
    for c in CERTS:
        crt, key = PKI / f"{c.name}.crt", PKI / f"{c.name}.key"
        if crt.exists():
            continue
        ext = PKI / f"{c.name}.ext"
        ext.write_text("basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,"
                       f"keyEncipherment\nextendedKeyUsage={c.usage}\n"
                       + (f"subjectAltName={c.sans}\n" if c.sans else ""))
        csr = PKI / f"{c.name}.csr"
        run("openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
            "-nodes", "-keyout", key, "-out", csr, "-subj", c.subject)
        run("openssl", "x509", "-req", "-in", csr, "-CA", ca_crt, "-CAkey", ca_key,
            "-CAcreateserial", "-out", crt, "-days", "3650", "-extfile", ext)
        csr.unlink()
        ext.unlink()
    if not (PKI / "sa.key").exists():
        run("openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048",
            "-out", PKI / "sa.key")
        run("openssl", "pkey", "-in", PKI / "sa.key", "-pubout", "-out", PKI / "sa.pub")
    for path in PKI.glob("*.key"):
        path.chmod(0o600)


def kubeconfig_text(cert: str, context: str = NODE) -> str:
    return json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": context,
        "clusters": [{"name": NODE, "cluster": {"server": APISERVER,
                                                "certificate-authority": str(PKI / "ca.crt")}}],
        "users": [{"name": cert, "user": {"client-certificate": str(PKI / f"{cert}.crt"),
                                          "client-key": str(PKI / f"{cert}.key")}}],
        "contexts": [{"name": context, "context": {"cluster": NODE, "user": cert}}],
    }, indent=1)


def write_configs(v: dict[str, str]) -> None:
    make_pki()
    for name, cert in KUBECONFIGS.items():
        (STATE / f"{name}.kubeconfig").write_text(kubeconfig_text(cert))
    # Pods resolve through CoreDNS only; no search domain or resolver of the host's.
    (STATE / "resolv.conf").write_text(f"nameserver {GATEWAY}\n")
    (STATE / "net.d").mkdir(exist_ok=True)
    (STATE / "net.d" / "10-scalelab.conflist").write_text(json.dumps({
        "cniVersion": "1.0.0", "name": "scalelab",
        "plugins": [{
            "type": "bridge", "bridge": BRIDGE, "isGateway": True, "isDefaultGateway": False,
            "ipMasq": False, "hairpinMode": True,
            "ipam": {"type": "host-local", "dataDir": str(STATE / "cni-ipam"),
                     "ranges": [[{"subnet": POD_SUBNET, "gateway": GATEWAY,
                                  "rangeStart": "10.244.0.10"}]],
                     # the pod and Service ranges, and nothing beyond this machine
                     "routes": [{"dst": CLUSTER_CIDR}, {"dst": SERVICE_CIDR}]},
        }],
    }, indent=1))
    (STATE / "containerd.toml").write_text(f"""\
version = 2
root = "{STATE / 'containerd'}"
state = "{RUN / 'containerd'}"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
                    "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper",
                    "io.containerd.tracing.processor.v1.otlp"]
[grpc]
  address = "{CONTAINERD_SOCK}"
[plugins."io.containerd.internal.v1.opt"]
  path = "{STATE / 'containerd-opt'}"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{v['PAUSE_IMAGE']}"
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
        BinaryName = "{os.environ.get('SCALELAB_NODE_RUNC') or shutil.which('runc') or 'runc'}"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{STATE / 'net.d'}"
""")
    (STATE / "kubelet.yaml").write_text(json.dumps({
        "apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration",
        "address": GATEWAY, "port": 10250, "readOnlyPort": 0,
        "healthzBindAddress": KUBELET_HEALTH.split(":")[0],
        "healthzPort": int(KUBELET_HEALTH.split(":")[1]),
        "authentication": {"anonymous": {"enabled": False}, "webhook": {"enabled": True},
                           "x509": {"clientCAFile": str(PKI / "ca.crt")}},
        "authorization": {"mode": "Webhook"},
        "tlsCertFile": str(PKI / "kubelet.crt"), "tlsPrivateKeyFile": str(PKI / "kubelet.key"),
        "cgroupDriver": "cgroupfs",
        "containerRuntimeEndpoint": f"unix://{CONTAINERD_SOCK}",
        "clusterDNS": [GATEWAY], "clusterDomain": "cluster.local",
        "resolvConf": str(STATE / "resolv.conf"),
        "failSwapOn": False,
        # The images are imported, never pulled: keep them whatever the disk says.
        "imageGCHighThresholdPercent": 100, "imageGCLowThresholdPercent": 99,
        "evictionHard": {"memory.available": "100Mi", "nodefs.available": "1%",
                         "imagefs.available": "1%", "nodefs.inodesFree": "1%"},
        "serializeImagePulls": False,
        "podLogsDir": str(STATE / "pod-logs"),
        "syncFrequency": "10s",
    }, indent=1))
    (STATE / "kube-proxy.yaml").write_text(json.dumps({
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1", "kind": "KubeProxyConfiguration",
        "clientConnection": {"kubeconfig": str(STATE / "kube-proxy.kubeconfig")},
        "mode": "iptables", "hostnameOverride": NODE, "clusterCIDR": CLUSTER_CIDR,
        "healthzBindAddress": KUBE_PROXY_HEALTH, "metricsBindAddress": "127.0.0.1:10249",
        # NodePorts on the loopback only: where kind publishes them (kind-config.yaml).
        "nodePortAddresses": ["127.0.0.0/8"],
        "iptables": {"localhostNodePorts": True, "masqueradeAll": False,
                     "syncPeriod": "10s", "minSyncPeriod": "0s"},
        # 0: leave the host's conntrack settings as they are
        "conntrack": {"maxPerCore": 0, "min": 0, "tcpEstablishedTimeout": "0s",
                      "tcpCloseWaitTimeout": "0s"},
    }, indent=1))
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


def commands() -> dict[str, list[str]]:
    p = PKI
    return {
        "etcd": [
            etcd_bin(), "--name", NODE, "--data-dir", str(STATE / "etcd"),
            "--listen-client-urls", ETCD_CLIENT, "--advertise-client-urls", ETCD_CLIENT,
            "--listen-peer-urls", ETCD_PEER, "--initial-advertise-peer-urls", ETCD_PEER,
            "--initial-cluster", f"{NODE}={ETCD_PEER}", "--logger", "zap", "--log-level", "warn"],
        "kube-apiserver": [
            str(BIN / "kube-apiserver"), f"--advertise-address={GATEWAY}",
            f"--bind-address={GATEWAY}", "--secure-port=6443",
            f"--etcd-servers={ETCD_CLIENT}", f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--authorization-mode=Node,RBAC",
            # PodSecurity is on by default; named so the manifests' reliance on it is explicit.
            "--enable-admission-plugins=NodeRestriction,PodSecurity",
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
            "--use-service-account-credentials=true", "--profiling=false", "--v=0"],
        "kube-scheduler": [
            str(BIN / "kube-scheduler"), *kubeconfig_flags("scheduler"),
            "--bind-address=127.0.0.1", "--leader-elect=false", "--profiling=false", "--v=0"],
        "containerd": ["containerd", "--config", str(STATE / "containerd.toml")],
        "kubelet": [
            str(BIN / "kubelet"), f"--config={STATE / 'kubelet.yaml'}",
            f"--kubeconfig={STATE / 'kubelet.kubeconfig'}", f"--hostname-override={NODE}",
            f"--node-ip={GATEWAY}", f"--root-dir={STATE / 'kubelet'}", "--v=0"],
        "kube-proxy": [str(BIN / "kube-proxy"), f"--config={STATE / 'kube-proxy.yaml'}", "--v=0"],
        "coredns": [str(BIN / "coredns"), "-conf", str(STATE / "Corefile")],
        # The NetworkPolicy firewall only. Its health server, which up waits on, listens
        # on every address (v2.1.0 has no bind option): net_up keeps it to loopback.
        "kube-router": [
            str(BIN / "kube-router"), "--run-firewall=true", "--run-router=false",
            "--run-service-proxy=false", f"--kubeconfig={STATE / 'kube-router.kubeconfig'}",
            f"--hostname-override={NODE}", f"--service-cluster-ip-range={SERVICE_CIDR}",
            f"--health-port={KUBE_ROUTER_HEALTH_PORT}", "--metrics-port=0",
            "--iptables-sync-period=10s", "--v=1"],
    }


def policy_engine() -> str | None:
    """Why the node will enforce no NetworkPolicy, or None when kube-router can run."""
    if not (BIN / "kube-router").exists():
        return f"no kube-router in {BIN} (make node-binaries builds it)"
    if not shutil.which("ipset"):
        return "no ipset on PATH for kube-router (apt-get install ipset)"
    return None


def etcd_bin() -> str:
    """etcd of the release Kubernetes pins (build.sh builds it last), else the one on
    PATH (Debian's 3.4.23: the API server's storage needs nothing newer)."""
    own = BIN / "etcd"
    return str(own) if own.exists() else shutil.which("etcd") or "etcd"


def kubeconfig_flags(name: str) -> list[str]:
    path = STATE / f"{name}.kubeconfig"
    return [f"--kubeconfig={path}", f"--authentication-kubeconfig={path}",
            f"--authorization-kubeconfig={path}"]


# --- the supervisor ----------------------------------------------------------------------


class Stop(Exception):
    """SIGTERM or SIGINT reached the supervisor."""


def _on_signal(signum: int, _frame: object) -> None:
    raise Stop(signal.Signals(signum).name)


class Supervisor:
    def __init__(self) -> None:
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.logs: list[IO[bytes]] = []

    def start(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> None:
        out = open(LOGS / f"{name}.log", "ab")  # noqa: SIM115 - closed at teardown
        self.logs.append(out)
        self.procs[name] = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out,
                                            stderr=subprocess.STDOUT,
                                            env={**os.environ, **(env or {})})
        log(f"started {name} (pid {self.procs[name].pid})")

    def dead(self) -> str | None:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                tail = (LOGS / f"{name}.log").read_text(errors="replace").strip().splitlines()
                return f"{name} exited ({proc.returncode}): {tail[-1][:300] if tail else ''}"
        return None

    def up(self, v: dict[str, str], *, control_plane_only: bool = False) -> None:
        cmd = commands()
        net_up()
        shutil.rmtree(STATE / "etcd", ignore_errors=True)  # a fresh cluster every time
        self.start("etcd", cmd["etcd"])
        wait_until("etcd", lambda: http_ok(f"{ETCD_CLIENT}/health"), 30, self.dead)
        self.start("kube-apiserver", cmd["kube-apiserver"])
        wait_until("the API server", lambda: http_ok(f"{APISERVER}/readyz", client_cert=True),
                   90, self.dead)
        kubectl("apply", "-f", str(HERE / "bootstrap.yaml"))
        self.start("kube-controller-manager", cmd["kube-controller-manager"])
        if control_plane_only:
            # no kubelet, so no pod to schedule: the scheduler is optional here
            if (BIN / "kube-scheduler").exists():
                self.start("kube-scheduler", cmd["kube-scheduler"])
            wait_until("controller-manager", lambda: http_ok("https://127.0.0.1:10257/healthz"),
                       60, self.dead)
            return
        self.start("kube-scheduler", cmd["kube-scheduler"])
        # An image missing from containerd must fail here, not be fetched from a registry.
        self.start("containerd", cmd["containerd"],
                   {"HTTP_PROXY": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9",
                    "NO_PROXY": ""})
        wait_until("containerd", lambda: ctr("version", check=False) != "", 30, self.dead)
        for archive in ("pause", "redis", "scalelab"):
            if (IMAGES / f"{archive}.tar").exists():
                import_image(IMAGES / f"{archive}.tar")
        self.start("kubelet", cmd["kubelet"])
        self.start("kube-proxy", cmd["kube-proxy"])
        self.start("coredns", cmd["coredns"])
        wait_until("controller-manager and scheduler",
                   lambda: http_ok("https://127.0.0.1:10257/healthz")
                   and http_ok("https://127.0.0.1:10259/healthz"), 60, self.dead)
        wait_until(f"Node {NODE} Ready", node_ready, 90, self.dead)
        # kube-router finds its node by name: only once kubelet has registered it.
        if (why := policy_engine()) is None:
            self.start("kube-router", cmd["kube-router"])
        else:
            log(f"NetworkPolicy will not be enforced: {why}")
        wait_until("kube-proxy", lambda: http_ok(f"http://{KUBE_PROXY_HEALTH}/healthz"), 30,
                   self.dead)
        wait_until("CoreDNS", lambda: http_ok(f"http://{COREDNS_READY}/ready"), 30, self.dead)
        if "kube-router" in self.procs:
            wait_until("kube-router's firewall", lambda: http_ok(
                f"http://127.0.0.1:{KUBE_ROUTER_HEALTH_PORT}/healthz"), 60, self.dead)
        # the default namespace's service account, which the lab's namespace gets too
        wait_until("the service-account controller",
                   lambda: kubectl("get", "serviceaccount", "default", check=False) != "",
                   30, self.dead)

    def watch(self) -> None:
        while True:
            if why := self.dead():
                raise NodeError(why)
            time.sleep(1)

    def teardown(self) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        if self.alive("kube-apiserver") and self.alive("kubelet"):
            drain()
        for name in reversed(COMPONENTS):
            proc = self.procs.get(name)
            if proc is None:
                continue
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            log(f"stopped {name} ({proc.returncode})")
        reap_children()
        sweep()
        for f in self.logs:
            f.close()

    def alive(self, name: str) -> bool:
        proc = self.procs.get(name)
        return proc is not None and proc.poll() is None


def supervise(control_plane_only: bool = False) -> int:
    """Run the node until SIGTERM/SIGINT, then take it all down (the detached process)."""
    # Orphans (containerd's shims, and through them the containers) are re-parented to
    # us rather than to init, so the teardown can find and end every one of them.
    import ctypes

    PR_SET_CHILD_SUBREAPER = 36
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    v = V
    sup = Supervisor()
    code = 0
    try:
        RUN.mkdir(parents=True, exist_ok=True)
        LOGS.mkdir(parents=True, exist_ok=True)
        PIDFILE.write_text(str(os.getpid()))
        save_sysctls()
        write_configs(v)
        started = time.monotonic()
        sup.up(v, control_plane_only=control_plane_only)
        READY.write_text(f"{time.monotonic() - started:.1f}")
        log(f"node ready in {time.monotonic() - started:.0f}s")
        sup.watch()
    except Stop as stop:
        log(f"{stop}: stopping")
    except (NodeError, OSError, subprocess.SubprocessError) as exc:
        log(f"error: {exc}")
        (RUN / "failed").write_text(str(exc) or type(exc).__name__)
        code = 1
    finally:
        sup.teardown()
        READY.unlink(missing_ok=True)
        PIDFILE.unlink(missing_ok=True)
        log("down")
    return code


# --- pieces of the node ------------------------------------------------------------------


def ctr(*args: str | Path, check: bool = True, timeout: float = 300) -> str:
    return run("ctr", "--address", CONTAINERD_SOCK, "--namespace", "k8s.io", *args,
               check=check, timeout=timeout)


def import_image(archive: Path) -> None:
    # unpacked for the snapshotter the CRI uses, as `kind load` imports an image
    ctr("images", "import", "--snapshotter", "overlayfs", archive)


def node_ready() -> bool:
    out = kubectl("get", "node", NODE, "-o",
                  'jsonpath={.status.conditions[?(@.type=="Ready")].status}', check=False)
    return out.strip() == "True"


def net_up() -> None:
    """The pods' bridge, its forwarding, and the rule that keeps pod traffic on the machine."""
    if not Path(f"/sys/class/net/{BRIDGE}").exists():
        run("ip", "link", "add", BRIDGE, "type", "bridge")
    run("ip", "addr", "replace", f"{GATEWAY}/24", "dev", BRIDGE)
    run("ip", "link", "set", BRIDGE, "up")
    # Forwarding for packets that arrive on the bridge only (a pod -> a Service -> a
    # pod); it goes with the bridge at down.
    Path(f"/proc/sys/net/ipv4/conf/{BRIDGE}/forwarding").write_text("1")
    run("iptables", "-N", "SCALELAB-NODE", check=False)
    run("iptables", "-F", "SCALELAB-NODE")
    run("iptables", "-A", "SCALELAB-NODE", "-i", BRIDGE, "-o", BRIDGE, "-j", "ACCEPT")
    run("iptables", "-A", "SCALELAB-NODE", "-i", BRIDGE, "-j", "REJECT")
    run("iptables", "-A", "SCALELAB-NODE", "-o", BRIDGE, "-j", "REJECT")
    # kube-router's health server listens on every address: answer on loopback only.
    if run("iptables", "-C", "INPUT", "!", "-i", "lo", "-p", "tcp", "--dport",
           str(KUBE_ROUTER_HEALTH_PORT), "-m", "comment", "--comment", COMMENT, "-j", "DROP",
           check=False) == "" and f"--dport {KUBE_ROUTER_HEALTH_PORT}" not in run(
               "iptables", "-S", "INPUT", check=False):
        run("iptables", "-I", "INPUT", "1", "!", "-i", "lo", "-p", "tcp", "--dport",
            str(KUBE_ROUTER_HEALTH_PORT), "-m", "comment", "--comment", COMMENT, "-j", "DROP")
    if run("iptables", "-C", "FORWARD", "-m", "comment", "--comment", COMMENT,
           "-j", "SCALELAB-NODE", check=False) == "" and not forward_jump_present():
        run("iptables", "-I", "FORWARD", "1", "-m", "comment", "--comment", COMMENT,
            "-j", "SCALELAB-NODE")


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


def forward_jump_present() -> bool:
    return "-j SCALELAB-NODE" in run("iptables", "-S", "FORWARD", check=False)


def drain() -> None:
    """Delete every pod through the API so kubelet stops each sandbox (CNI DEL: veth and
    netns go) before kubelet itself stops."""
    log("draining pods")
    kubectl("delete", "namespace", NAMESPACE, "--ignore-not-found", "--wait=false",
            check=False, timeout=30)
    kubectl("delete", "pods", "--all", "--all-namespaces", "--grace-period=1", "--wait=false",
            check=False, timeout=30)
    with contextlib.suppress(NodeError):
        wait_until("every pod to stop", lambda: not kubectl(
            "get", "pods", "-A", "-o", "name", check=False).strip()
                   and not running_tasks(), 60)


def running_tasks() -> list[str]:
    out = ctr("tasks", "ls", "-q", check=False, timeout=10)
    return out.split()


def children() -> list[int]:
    me = str(os.getpid())
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if fields[1] == me:
                kids.append(int(stat.parent.name))
    return kids


def reap_children() -> None:
    """End what was re-parented to us: shims and, through them, container processes."""
    deadline = time.monotonic() + 20
    while kids := children():
        for pid in kids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            while os.waitpid(-1, os.WNOHANG)[0] > 0:
                pass
        if time.monotonic() > deadline:
            log(f"children left: {kids}")
            return
        time.sleep(0.1)


def our_mounts() -> list[str]:
    mine = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].replace("\\040", " ")
        if (point.startswith((str(STATE) + "/", str(RUN) + "/"))
                or re.fullmatch(r"/(var/)?run/netns/cni-[0-9a-f-]+", point)):
            mine.append(point)
    return mine


def our_links() -> list[str]:
    links = []
    for dev in Path("/sys/class/net").iterdir():
        master = dev / "master"
        if dev.name == BRIDGE or (master.exists() and master.resolve().name == BRIDGE):
            links.append(dev.name)
    return links


def our_rules() -> list[str]:
    rules = []
    for save in ("iptables-save", "ip6tables-save"):
        if not shutil.which(save):
            continue
        for line in run(save, check=False).splitlines():
            if line.startswith(("-A", ":")) and (
                    OUR_CHAINS.search(line[1:].split()[0] if line[0] == ":" else line.split()[1])
                    or re.search(r"-j (KUBE-|CNI-|SCALELAB-)", line) or COMMENT in line):
                rules.append(f"{save.split('-')[0]}: {line}")
    return rules


def our_processes() -> list[str]:
    """Processes of the node: its binaries, its containerd and shims, containers' cgroups."""
    found = []
    markers = (f"{STATE}/", f"{RUN}/")  # containerd's config, the shims' address
    for proc in Path("/proc").glob("[0-9]*"):
        if int(proc.name) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            cgroup = (proc / "cgroup").read_text()
            exe = ""
            with contextlib.suppress(OSError):
                exe = os.readlink(proc / "exe")
            if (exe.startswith(f"{BIN}/") or any(m in cmdline for m in markers)
                    or "/kubepods" in cgroup or ("node.py" in cmdline and "supervise" in cmdline)):
                if "node.py" in cmdline and "supervise" not in cmdline:
                    continue  # this command itself
                found.append(f"{proc.name} {cmdline.strip()[:120]}")
    return found


def leftovers() -> dict[str, list[str]]:
    return {"processes": our_processes(), "mounts": our_mounts(), "links": our_links(),
            "iptables": our_rules(), "ipsets": our_ipsets()}


def sweep() -> None:
    """Remove what the node left on the machine; idempotent, also after a crash."""
    for point in sorted(our_mounts(), key=len, reverse=True):
        run("umount", "-l", point, check=False)
        if "/netns/" in point:
            Path(point).unlink(missing_ok=True)
    for dev in our_links():
        if dev != BRIDGE:
            run("ip", "link", "delete", dev, check=False)
    if Path(f"/sys/class/net/{BRIDGE}").exists():
        run("ip", "link", "delete", BRIDGE, check=False)
    if (BIN / "kube-proxy").exists():
        run(BIN / "kube-proxy", "--cleanup", check=False, timeout=60)
    remove_rules()
    remove_ipsets()  # after the rules that match on them
    restore_sysctls()
    remove_cgroups()
    for d in ("etcd", "kubelet", "cni-ipam", "containerd", "containerd-opt", "pod-logs"):
        shutil.rmtree(STATE / d, ignore_errors=True)
    shutil.rmtree(RUN / "containerd", ignore_errors=True)


def remove_rules() -> None:
    for family in ("iptables", "ip6tables"):
        if not shutil.which(family):
            continue
        for table in ("filter", "nat", "mangle", "raw"):
            text = run(f"{family}-save", "-t", table, check=False)
            ours = [ln[1:].split()[0] for ln in text.splitlines()
                    if ln.startswith(":") and OUR_CHAINS.match(ln[1:])]
            for ln in text.splitlines():
                if not ln.startswith("-A "):
                    continue
                chain = ln.split()[1]
                if chain not in ours and (re.search(r"-j (KUBE-|CNI-|SCALELAB-)", ln)
                                          or COMMENT in ln):
                    run(family, "-t", table, "-D", *shlex.split(ln)[1:], check=False)
            for chain in ours:
                run(family, "-t", table, "-F", chain, check=False)
            for chain in ours:
                run(family, "-t", table, "-X", chain, check=False)


def our_ipsets() -> list[str]:
    if not shutil.which("ipset"):
        return []
    return [n for n in run("ipset", "list", "-n", check=False).split() if OUR_IPSETS.match(n)]


def remove_ipsets() -> None:
    for name in our_ipsets():
        run("ipset", "destroy", name, check=False)


def save_sysctls() -> None:
    path = STATE / "sysctls.json"
    if path.exists():
        return  # a crashed run's originals: keep them
    values = {}
    for key in SYSCTLS:
        with contextlib.suppress(OSError):
            values[key] = Path("/proc/sys", key).read_text().strip()
    path.write_text(json.dumps(values))


def restore_sysctls() -> None:
    path = STATE / "sysctls.json"
    if not path.exists():
        return
    for key, value in json.loads(path.read_text()).items():
        with contextlib.suppress(OSError):
            Path("/proc/sys", key).write_text(value)
    path.unlink()


def remove_cgroups() -> None:
    roots = [p for p in Path("/sys/fs/cgroup").iterdir() if p.is_dir()] + [Path("/sys/fs/cgroup")]
    for root in roots:
        top = root / "kubepods"
        if not top.is_dir():
            continue
        for d in sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: len(p.parts),
                        reverse=True):
            with contextlib.suppress(OSError):
                d.rmdir()
        with contextlib.suppress(OSError):
            top.rmdir()


# --- the commands ------------------------------------------------------------------------


def supervisor_pid() -> int | None:
    try:
        pid = int(PIDFILE.read_text())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    return pid


def preflight(control_plane_only: bool = False) -> None:
    if os.geteuid() != 0:
        raise UsageError("needs root (it creates a bridge, mounts and iptables rules)")
    if control_plane_only:
        if not all((BIN / b).exists() for b in ("kube-apiserver", "kube-controller-manager")):
            raise UsageError(f"no control-plane binaries in {BIN}: run `make node-binaries`")
        return
    if not (Path(V["KUBE_CACHE_DIR"]) / "complete").exists():
        raise UsageError(f"no binaries for Kubernetes {V['KUBE_VERSION']} in {BIN}: "
                         "run `make node-binaries` (k8s/node/build.sh) first")
    missing = [t for t in ("etcd", "containerd", "containerd-shim-runc-v2", "runc", "ctr",
                           "iptables", "ip", "openssl", "buildah", "debootstrap", "conntrack")
               if not shutil.which(t)]
    if not Path("/usr/lib/cni/bridge").exists():
        missing.append("/usr/lib/cni/bridge")
    if missing:
        raise UsageError(f"missing: {' '.join(missing)} (apt-get install etcd-server containerd "
                         "runc containernetworking-plugins iptables conntrack buildah debootstrap)")


class UsageError(Exception):
    """Bad input or a machine the node cannot run on: one line, exit 2."""


def inputs_digest() -> str:
    """What the lab image is built from (services/Dockerfile's build context)."""
    h = hashlib.sha256()
    files = [ROOT / "pyproject.toml", ROOT / "requirements.lock", ROOT / "services" / "Dockerfile",
             HERE / "images.sh", HERE / "versions.sh"]
    for pkg in ("services", "chaos", "experiments"):
        files += sorted(p for p in (ROOT / pkg).rglob("*")
                        if p.is_file() and "__pycache__" not in p.parts)
    for f in files:
        h.update(str(f.relative_to(ROOT)).encode() + b"\0" + f.read_bytes())
    h.update(os.environ.get("IMAGE", "").encode())
    return h.hexdigest()


def build_images() -> None:
    stamp = IMAGES / "inputs.sha256"
    digest = inputs_digest()
    if stamp.exists() and stamp.read_text() == digest and all(
            (IMAGES / f"{n}.tar").exists() for n in ("pause", "redis", "scalelab")):
        log("images: unchanged since the last build")
        return
    started = time.monotonic()
    proc = subprocess.run([str(HERE / "images.sh"), str(IMAGES)], stdout=sys.stdout,
                          stderr=sys.stderr, check=False, timeout=1800)
    if proc.returncode != 0:
        raise NodeError(f"images.sh failed ({proc.returncode})")
    stamp.write_text(digest)
    log(f"images built in {time.monotonic() - started:.0f}s")


def render_overlay(overlay: str) -> Path:
    """k8s/overlays/<overlay> with the Redis image this node built (nothing is pulled)."""
    source = ROOT / "k8s" / "overlays" / overlay
    if not (source / "kustomization.yaml").exists():
        have = sorted(p.parent.name
                      for p in (ROOT / "k8s" / "overlays").glob("*/kustomization.yaml"))
        raise UsageError(f"no overlay {overlay!r} (have: {', '.join(have)})")
    target = STATE / "overlay"
    target.mkdir(parents=True, exist_ok=True)
    name, _, tag = V["REDIS_IMAGE"].rpartition(":")
    (target / "kustomization.yaml").write_text(json.dumps({
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
        # kustomize accepts only relative paths to other kustomizations
        "resources": [os.path.relpath(source, target)],
        "images": [{"name": "redis", "newName": name, "newTag": tag}],
    }, indent=1))
    return target


def redis_pings(port: int) -> bool:
    import socket

    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as conn:
            conn.sendall(b"PING\r\n")
            return conn.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def merge_kubeconfig() -> None:
    """Add (or refresh) the context CONTEXT in the user's kubeconfig, as kind does."""
    for args in (
        ["set-cluster", CONTEXT, f"--server={APISERVER}",
         f"--certificate-authority={PKI / 'ca.crt'}", "--embed-certs"],
        ["set-credentials", CONTEXT, f"--client-certificate={PKI / 'admin.crt'}",
         f"--client-key={PKI / 'admin.key'}", "--embed-certs"],
        ["set-context", CONTEXT, f"--cluster={CONTEXT}", f"--user={CONTEXT}"],
    ):
        run(kubectl_bin(), "config", *args)
    # A kubeconfig without a current context is one the Python client refuses to load.
    if not run(kubectl_bin(), "config", "current-context", check=False).strip():
        run(kubectl_bin(), "config", "use-context", CONTEXT)


def unmerge_kubeconfig() -> None:
    if run(kubectl_bin(), "config", "current-context", check=False).strip() == CONTEXT:
        run(kubectl_bin(), "config", "unset", "current-context", check=False)
    for args in (["delete-context", CONTEXT], ["delete-cluster", CONTEXT],
                 ["delete-user", CONTEXT]):
        run(kubectl_bin(), "config", *args, check=False)


def empty_settings() -> None:
    """Empty the settings ConfigMap before an apply: client-side apply deletes only the
    keys it applied itself, so the harness's last settings would outlive the overlay."""
    if kubectl("-n", NAMESPACE, "get", "configmap/scalelab-settings", check=False):
        kubectl("-n", NAMESPACE, "patch", "configmap/scalelab-settings", "--type=json",
                "-p", '[{"op": "add", "path": "/data", "value": {}}]')


def cmd_up(overlay: str, control_plane_only: bool = False) -> int:
    """The node and the lab. ``control_plane_only``: etcd, the API server,
    controller-manager and scheduler, no kubelet: the lab's objects are created and
    admitted, its pods stay Pending (the layer where the API's semantics are tested)."""
    preflight(control_plane_only)
    started = time.monotonic()
    render_overlay(overlay)  # bad input fails before anything starts
    IMAGES.mkdir(parents=True, exist_ok=True)
    if not control_plane_only:
        build_images()
    if supervisor_pid() is None:
        sweep()  # what a crashed run may have left
        RUN.mkdir(parents=True, exist_ok=True)
        LOGS.mkdir(parents=True, exist_ok=True)
        (RUN / "failed").unlink(missing_ok=True)
        out = open(LOGS / "supervisor.log", "ab")  # noqa: SIM115 - handed to the child
        proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "supervise",
                                 *(["--control-plane-only"] if control_plane_only else [])],
                                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
        out.close()

        def gone() -> str | None:
            if proc.poll() is None:
                return None
            return (RUN / "failed").read_text() if (RUN / "failed").exists() else \
                f"supervisor exited ({proc.returncode}); see {LOGS / 'supervisor.log'}"

        try:
            wait_until("the node", READY.exists, 300, gone)
        except (KeyboardInterrupt, NodeError):
            # A node that never came up has no other owner: take it down with us.
            if proc.poll() is None:
                proc.terminate()
                proc.wait(180)
            raise
        log(f"components up in {READY.read_text()}s")
    else:
        log("node already running")
        for archive in ("pause", "redis", "scalelab"):
            import_image(IMAGES / f"{archive}.tar")
    merge_kubeconfig()
    empty_settings()
    kubectl("apply", "-k", str(STATE / "overlay"), timeout=120)
    if control_plane_only:
        log(f"control plane up in {time.monotonic() - started:.0f}s: context {CONTEXT!r}")
        return 0
    # Same tag, perhaps a new image: restart so running pods pick up what was imported.
    kubectl("-n", NAMESPACE, "rollout", "restart",
            *(f"deployment/{d}" for d in ("api", "worker", "beat")))
    for d in LAB_DEPLOYMENTS:
        kubectl("-n", NAMESPACE, "rollout", "status", f"deployment/{d}", "--timeout=180s",
                timeout=200)
    # Ready pods are not yet reachable ones: kube-proxy, and a NetworkPolicy engine
    # (kube-router's sync), program a new pod a moment later. Up means the harness
    # reaches the API and both Redis through their NodePorts, as on kind.
    wait_until("the lab's NodePorts on 127.0.0.1",
               lambda: http_ok("http://127.0.0.1:30800/healthz")
               and all(redis_pings(port) for port in (30379, 30380)), 120)
    log(f"up in {time.monotonic() - started:.0f}s: context {CONTEXT!r} "
        f"(KUBE_CONTEXT={CONTEXT} make test-kind)")
    if (why := policy_engine()) is not None:
        kind_engine = policy_engine_problem() if shutil.which("nft") else None
        log(f"NetworkPolicy is not enforced ({why}"
            + (f"; kind's engine, kube-network-policies, cannot run here: {kind_engine}"
               if kind_engine else "") + "): the partition fault fails here")
    else:
        log("NetworkPolicy enforced by kube-router's firewall")
    return 0


def cmd_down() -> int:
    if os.geteuid() != 0:
        raise UsageError("needs root")
    started = time.monotonic()
    if (pid := supervisor_pid()) is not None:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 180
        while supervisor_pid() is not None and time.monotonic() < deadline:
            time.sleep(0.2)
        if supervisor_pid() is not None:
            log(f"supervisor {pid} did not stop in 180s: killing it")
            os.kill(pid, signal.SIGKILL)
    for line in our_processes():
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(line.split()[0]), signal.SIGKILL)
    sweep()
    if Path(kubectl_bin()).exists():
        unmerge_kubeconfig()
    left = {k: v for k, v in leftovers().items() if v}
    for kind, items in left.items():
        for item in items:
            print(f"left: {kind}: {item}", file=sys.stderr)
    log(f"down in {time.monotonic() - started:.0f}s" + (", with leftovers" if left else ""))
    return 1 if left else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="node.py", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start the node and deploy the lab")
    up.add_argument("--overlay", default=os.environ.get("OVERLAY", "kind"))
    up.add_argument("--control-plane-only", action="store_true",
                    help="etcd, API server, controller-manager, scheduler; no kubelet")
    sub.add_parser("images", help="build the images `up` imports (if their inputs changed)")
    sub.add_parser("down", help="stop the node; leave nothing behind")
    sub.add_parser("status", help="say whether the node runs")
    sub.add_parser("leftovers", help="list what the node left (exit 1 if anything)")
    sub.add_parser("kubeconfig", help="print the admin kubeconfig's path")
    sub.add_parser("supervise", help=argparse.SUPPRESS).add_argument(
        "--control-plane-only", action="store_true")
    args = parser.parse_args(argv)
    try:
        if args.command == "up":
            return cmd_up(args.overlay, args.control_plane_only)
        if args.command == "down":
            return cmd_down()
        if args.command == "images":
            preflight()
            IMAGES.mkdir(parents=True, exist_ok=True)
            build_images()
            return 0
        if args.command == "supervise":
            return supervise(args.control_plane_only)
        if args.command == "kubeconfig":
            print(ADMIN_KUBECONFIG)
            return 0
        if args.command == "status":
            pid = supervisor_pid()
            print(f"running (supervisor {pid})" if pid and READY.exists()
                  else "starting" if pid else "down")
            return 0 if pid else 1
        left = {k: v for k, v in leftovers().items() if v}
        print(json.dumps(left, indent=1))
        return 1 if left else 0
    except UsageError as exc:
        print(f"node.py: {exc}", file=sys.stderr)
        return 2
    except NodeError as exc:
        print(f"node.py: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
