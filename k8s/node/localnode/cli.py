"""The node's commands (``node.py --help``). Bad input exits 2 with one line; a node
that cannot do what was asked exits 1 with one line."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from localnode import network
from localnode.components import policy_engine
from localnode.images import build_images, import_images
from localnode.kubeconfig import kubectl_bin, merge_kubeconfig, unmerge_kubeconfig
from localnode.lab import apply_lab, render_overlay, restart_and_wait
from localnode.layout import (
    ADMIN_KUBECONFIG,
    BIN,
    CONTEXT,
    LOGS,
    MAX_NODES,
    NODE,
    NODES_FILE,
    PIDFILE,
    PIDS,
    READY,
    RUN,
    V,
    node_specs,
    spec_named,
)
from localnode.shell import NodeError, UsageError, log, wait_until
from localnode.supervisor import supervise
from localnode.sweep import leftovers, our_processes, sweep

SCRIPT = Path(__file__).resolve().parents[1] / "node.py"


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
                           "iptables", "ip", "nsenter", "openssl", "buildah", "debootstrap",
                           "conntrack") if not shutil.which(t)]
    if not Path("/usr/lib/cni/bridge").exists():
        missing.append("/usr/lib/cni/bridge")
    if missing:
        raise UsageError(f"missing: {' '.join(missing)} (apt-get install etcd-server containerd "
                         "runc containernetworking-plugins iptables conntrack buildah debootstrap)")


def running_nodes() -> dict[str, object]:
    """The running node's nodes.json (NodeError when the node is not up)."""
    if supervisor_pid() is None or not READY.exists() or not NODES_FILE.exists():
        raise UsageError("the local node is not up (make cluster-up-local NODES=2)")
    data: dict[str, object] = json.loads(NODES_FILE.read_text())
    return data


def start_supervisor(control_plane_only: bool, nodes: int) -> None:
    sweep()  # what a crashed run may have left
    RUN.mkdir(parents=True, exist_ok=True)
    LOGS.mkdir(parents=True, exist_ok=True)
    (RUN / "failed").unlink(missing_ok=True)
    out = open(LOGS / "supervisor.log", "ab")  # noqa: SIM115 - handed to the child
    proc = subprocess.Popen([sys.executable, str(SCRIPT), "supervise", "--nodes", str(nodes),
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
        wait_until("the node", READY.exists, 300 + 120 * (nodes - 1), gone)
    except (KeyboardInterrupt, NodeError):
        # A node that never came up has no other owner: take it down with us.
        if proc.poll() is None:
            proc.terminate()
            proc.wait(180)
        raise
    log(f"components up in {READY.read_text()}s")


def cmd_up(overlay: str, control_plane_only: bool = False, nodes: int = 1) -> int:
    """The node and the lab. ``control_plane_only``: etcd, the API server,
    controller-manager and scheduler, no kubelet: the lab's objects are created and
    admitted, its pods stay Pending (the layer where the API's semantics are tested)."""
    if not 1 <= nodes <= MAX_NODES:
        raise UsageError(f"--nodes must be 1 to {MAX_NODES}, not {nodes}")
    if control_plane_only and nodes != 1:
        raise UsageError("--control-plane-only runs no node: --nodes does not apply")
    preflight(control_plane_only)
    started = time.monotonic()
    render_overlay(overlay, nodes)  # bad input fails before anything starts
    if not control_plane_only:
        build_images()
    if supervisor_pid() is None:
        start_supervisor(control_plane_only, nodes)
    else:
        have = len(running_nodes()["nodes"])  # type: ignore[arg-type]
        if have != nodes:
            raise UsageError(f"the local node runs {have} node(s), not {nodes}: "
                             "make cluster-down-local first")
        log("node already running")
        for spec in node_specs(nodes):
            import_images(spec)
    merge_kubeconfig()
    apply_lab()
    if control_plane_only:
        log(f"control plane up in {time.monotonic() - started:.0f}s: context {CONTEXT!r}")
        return 0
    restart_and_wait()
    log(f"up in {time.monotonic() - started:.0f}s with {nodes} node(s): context {CONTEXT!r} "
        f"(KUBE_CONTEXT={CONTEXT} make test-kind)")
    if (why := policy_engine()) is not None:
        kind_engine = network.policy_engine_problem() if shutil.which("nft") else None
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


def cmd_isolate(name: str, how: str, undo: bool) -> int:
    """Cut (or freeze) a node off the control plane, or bring it back (``undo``)."""
    if os.geteuid() != 0:
        raise UsageError("needs root")
    spec = spec_named(name)
    if spec is None:
        raise UsageError(f"no node {name!r} (nodes: {', '.join(s.name for s in node_specs(2))})")
    if spec.first:
        raise UsageError(f"{NODE} hosts the control plane: isolate another node")
    data = running_nodes()
    entries: list[dict[str, object]] = data["nodes"]  # type: ignore[assignment]
    entry = next((e for e in entries if e["name"] == name), None)
    if entry is None:
        raise UsageError(f"{name} is not up (make cluster-up-local NODES=2)")
    kubelet = json.loads(PIDS.read_text())[f"kubelet{spec.suffix}"]
    if undo:
        network.uncut(spec)
        network.signal_kubelet(kubelet, signal.SIGCONT)
        entry["isolated"] = None
        log(f"{name} rejoined the control plane")
    else:
        if how == "cut":
            network.cut(spec)
        else:
            network.signal_kubelet(kubelet, signal.SIGSTOP)
        entry["isolated"] = how
        log(f"{name} isolated ({how}): its containers keep running")
    NODES_FILE.write_text(json.dumps(data, indent=1))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="node.py", description="The local Kubernetes node.")
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start the node and deploy the lab")
    up.add_argument("--overlay", default=os.environ.get("OVERLAY", "kind"))
    up.add_argument("--nodes", type=int, default=1,
                    help=f"how many nodes (1 to {MAX_NODES}; a second in its own namespace)")
    up.add_argument("--control-plane-only", action="store_true",
                    help="etcd, API server, controller-manager, scheduler; no kubelet")
    sub.add_parser("images", help="build the images `up` imports (if their inputs changed)")
    sub.add_parser("down", help="stop the node; leave nothing behind")
    sub.add_parser("status", help="say whether the node runs")
    sub.add_parser("nodes", help="the running nodes and their isolation (JSON)")
    isolate = sub.add_parser("isolate", help="cut (or freeze) a node off the control plane")
    isolate.add_argument("node")
    isolate.add_argument("--how", choices=("cut", "freeze"), default="cut",
                         help="cut: drop its traffic with the API server; freeze: stop its kubelet")
    sub.add_parser("rejoin", help="undo isolate").add_argument("node")
    sub.add_parser("leftovers", help="list what the node left (exit 1 if anything)")
    sub.add_parser("kubeconfig", help="print the admin kubeconfig's path")
    sv = sub.add_parser("supervise", help=argparse.SUPPRESS)
    sv.add_argument("--control-plane-only", action="store_true")
    sv.add_argument("--nodes", type=int, default=1)
    args = parser.parse_args(argv)
    try:
        if args.command == "up":
            return cmd_up(args.overlay, args.control_plane_only, args.nodes)
        if args.command == "down":
            return cmd_down()
        if args.command == "images":
            preflight()
            build_images()
            return 0
        if args.command == "supervise":
            return supervise(args.control_plane_only, args.nodes)
        if args.command in ("isolate", "rejoin"):
            return cmd_isolate(args.node, getattr(args, "how", "cut"), args.command == "rejoin")
        if args.command == "nodes":
            print(json.dumps(running_nodes(), indent=1))
            return 0
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
