"""The supervisor: the one detached process (``node.py supervise``) whose children are
every component of every node. It starts them in order, waits until each answers,
watches them, and on SIGTERM/SIGINT (or a component's death) drains the pods, stops
the components in reverse order, ends what was re-parented to it and sweeps.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from functools import partial
from pathlib import Path
from typing import IO

from localnode import sweep
from localnode.components import NO_PULL_ENV, control_plane_commands, node_commands, policy_engine
from localnode.configs import write_corefile, write_node_configs
from localnode.images import ctr, import_images
from localnode.kubeconfig import kubectl, node_ready
from localnode.layout import (
    APISERVER,
    BIN,
    COREDNS_READY,
    ETCD_CLIENT,
    HERE,
    KUBE_PROXY_HEALTH,
    KUBE_ROUTER_HEALTH_PORT,
    LOGS,
    NAMESPACE,
    NODE_MONITOR_GRACE_S,
    NODES_FILE,
    PIDFILE,
    PIDS,
    READY,
    RUN,
    STATE,
    TOLERATION_S,
    NodeSpec,
    V,
    node_specs,
)
from localnode.network import host_up, uncut
from localnode.pki import write_kubeconfigs
from localnode.shell import NodeError, http_ok, log, succeeds, wait_until


class Stop(Exception):
    """SIGTERM or SIGINT reached the supervisor."""


def _on_signal(signum: int, _frame: object) -> None:
    raise Stop(signal.Signals(signum).name)


def make_cgroup_root(spec: NodeSpec) -> None:
    """A further kubelet's cgroup root, in every v1 hierarchy (kubelet refuses to start
    when its cgroupRoot does not exist); cpuset's cpus and mems from its parent."""
    if spec.first:
        return
    for hierarchy in Path("/sys/fs/cgroup").iterdir():
        if not (hierarchy / "cgroup.procs").exists():
            continue
        node_root = hierarchy / spec.cgroup_root.strip("/")
        node_root.mkdir(exist_ok=True)
        for name in ("cpuset.cpus", "cpuset.mems"):
            if (hierarchy / name).exists() and not (node_root / name).read_text().strip():
                (node_root / name).write_text((hierarchy / name).read_text())


def node_http_ok(spec: NodeSpec, url: str) -> bool:
    """``http_ok`` from inside the node's namespace (its loopback is its own)."""
    if spec.first:
        return http_ok(url)
    probe = ("import sys, urllib.request; "
             "sys.exit(urllib.request.urlopen(sys.argv[1], timeout=2).status != 200)")
    return succeeds(*spec.enter(), sys.executable, "-c", probe, url, timeout=10)


def write_nodes_file(specs: list[NodeSpec]) -> None:
    """What `node.py nodes` prints: each node, and the settings node loss depends on."""
    NODES_FILE.write_text(json.dumps({
        "nodes": [{"name": s.name, "role": s.role, "netns": s.netns, "ip": s.ip,
                   "pod_subnet": s.pod_subnet, "isolated": None} for s in specs],
        "settings": {"node_monitor_grace_period_s": NODE_MONITOR_GRACE_S,
                     "default_not_ready_toleration_s": TOLERATION_S,
                     "default_unreachable_toleration_s": TOLERATION_S},
    }, indent=1))


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
        PIDS.write_text(json.dumps({n: p.pid for n, p in self.procs.items()}))
        log(f"started {name} (pid {self.procs[name].pid})")

    def dead(self) -> str | None:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                tail = (LOGS / f"{name}.log").read_text(errors="replace").strip().splitlines()
                return f"{name} exited ({proc.returncode}): {tail[-1][:300] if tail else ''}"
        return None

    def up(self, specs: list[NodeSpec], *, control_plane_only: bool = False) -> None:
        cmd = control_plane_commands()
        host_up(specs)
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
        for spec in specs:
            self.start_runtime(spec)
        self.start("coredns", cmd["coredns"])
        wait_until("controller-manager and scheduler",
                   lambda: http_ok("https://127.0.0.1:10257/healthz")
                   and http_ok("https://127.0.0.1:10259/healthz"), 60, self.dead)
        for spec in specs:
            wait_until(f"Node {spec.name} Ready", partial(node_ready, spec.name), 90, self.dead)
        # kube-router finds its node by name: only once kubelet has registered it.
        why = policy_engine()
        for spec in specs:
            if why is None:
                self.start(f"kube-router{spec.suffix}",
                           node_commands(spec)[f"kube-router{spec.suffix}"])
        if why is not None:
            log(f"NetworkPolicy will not be enforced: {why}")
        for spec in specs:
            wait_until(f"kube-proxy{spec.suffix}",
                       partial(node_http_ok, spec, f"http://{KUBE_PROXY_HEALTH}/healthz"),
                       30, self.dead)
            if why is None:
                wait_until(f"kube-router{spec.suffix}'s firewall", partial(
                    node_http_ok, spec, f"http://127.0.0.1:{KUBE_ROUTER_HEALTH_PORT}/healthz"),
                           60, self.dead)
        wait_until("CoreDNS", lambda: http_ok(f"http://{COREDNS_READY}/ready"), 30, self.dead)
        # the default namespace's service account, which the lab's namespace gets too
        wait_until("the service-account controller",
                   lambda: kubectl("get", "serviceaccount", "default", check=False) != "",
                   30, self.dead)

    def start_runtime(self, spec: NodeSpec) -> None:
        """A node's containerd with the images imported, its kubelet and kube-proxy."""
        cmd = node_commands(spec)
        make_cgroup_root(spec)
        # An image missing from containerd must fail here, not be fetched from a registry.
        self.start(f"containerd{spec.suffix}", cmd[f"containerd{spec.suffix}"], NO_PULL_ENV)
        wait_until(f"containerd{spec.suffix}",
                   lambda: succeeds("ctr", "--address", spec.containerd_sock, "version"),
                   30, self.dead)
        import_images(spec)
        self.start(f"kubelet{spec.suffix}", cmd[f"kubelet{spec.suffix}"])
        self.start(f"kube-proxy{spec.suffix}", cmd[f"kube-proxy{spec.suffix}"])

    def watch(self) -> None:
        while True:
            if why := self.dead():
                raise NodeError(why)
            time.sleep(1)

    def teardown(self, specs: list[NodeSpec]) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        # An isolated node rejoins first: its kubelet must stop its pods, and a frozen
        # one must hear SIGTERM.
        for spec in specs[1:]:
            uncut(spec)
        for proc in self.procs.values():
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGCONT)
        if self.alive("kube-apiserver") and self.alive("kubelet"):
            drain(specs)
        for name in reversed(list(self.procs)):
            proc = self.procs[name]
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            log(f"stopped {name} ({proc.returncode})")
        reap_children()
        sweep.sweep()
        for f in self.logs:
            f.close()

    def alive(self, name: str) -> bool:
        proc = self.procs.get(name)
        return proc is not None and proc.poll() is None


def supervise(control_plane_only: bool = False, nodes: int = 1) -> int:
    """Run the node until SIGTERM/SIGINT, then take it all down (the detached process)."""
    # Orphans (containerd's shims, and through them the containers) are re-parented to
    # us rather than to init, so the teardown can find and end every one of them.
    import ctypes

    PR_SET_CHILD_SUBREAPER = 36
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    specs = node_specs(1 if control_plane_only else nodes)
    sup = Supervisor()
    code = 0
    try:
        RUN.mkdir(parents=True, exist_ok=True)
        LOGS.mkdir(parents=True, exist_ok=True)
        PIDFILE.write_text(str(os.getpid()))
        sweep.save_sysctls()
        write_kubeconfigs(specs)
        write_corefile()
        for spec in specs:
            spec.run.mkdir(parents=True, exist_ok=True)
            write_node_configs(spec, V["PAUSE_IMAGE"])
        started = time.monotonic()
        sup.up(specs, control_plane_only=control_plane_only)
        write_nodes_file(specs)
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
        sup.teardown(specs)
        for path in (READY, PIDFILE, PIDS, NODES_FILE):
            path.unlink(missing_ok=True)
        log("down")
    return code


# --- taking the pods down ------------------------------------------------------------------


def drain(specs: list[NodeSpec]) -> None:
    """Delete every pod through the API so each kubelet stops its sandboxes (CNI DEL:
    veth and netns go) before kubelet itself stops."""
    log("draining pods")
    kubectl("delete", "namespace", NAMESPACE, "--ignore-not-found", "--wait=false",
            check=False, timeout=30)
    kubectl("delete", "pods", "--all", "--all-namespaces", "--grace-period=1", "--wait=false",
            check=False, timeout=30)
    with contextlib.suppress(NodeError):
        wait_until("every pod to stop", lambda: not kubectl(
            "get", "pods", "-A", "-o", "name", check=False).strip()
                   and not any(running_tasks(s) for s in specs), 60)


def running_tasks(spec: NodeSpec) -> list[str]:
    return ctr(spec, "tasks", "ls", "-q", check=False, timeout=10).split()


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

