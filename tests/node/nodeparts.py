"""The local node's package (k8s/node/localnode/), importable by the node's tests.

``node.py`` puts its own directory on ``sys.path`` the same way.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
NODE_DIR = ROOT / "k8s" / "node"
SCRIPT = NODE_DIR / "node.py"
if str(NODE_DIR) not in sys.path:
    sys.path.insert(0, str(NODE_DIR))

from localnode import cli, images, kubeconfig, lab, layout, network, shell, sweep  # noqa: E402

FIRST = layout.NodeSpec(1)


def run_node(*args: str, timeout: float,
             env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``node.py ARGS`` as the Makefile runs it."""
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True,
                          text=True, timeout=timeout, env=env)


def why_not(*, binaries: bool = True) -> str | None:
    """Why the node's tests cannot run here, or None."""
    import os

    if os.environ.get("SCALELAB_NODE_TESTS") != "1":
        return "opt-in: `make test-node` (brings the local node up and down)"
    if os.geteuid() != 0:
        return "needs root"
    if binaries and not (Path(layout.V["KUBE_CACHE_DIR"]) / "complete").exists():
        return f"no local-node binaries cached in {layout.BIN}: `make node-binaries`"
    if cli.supervisor_pid() is not None:
        return "the local node is already running: `make cluster-down-local` first"
    return None


def left_behind() -> dict[str, list[str]]:
    """What the node left on the machine, by kind (empty lists when nothing)."""
    return {k: v for k, v in sweep.leftovers().items() if v}


__all__ = ["FIRST", "ROOT", "SCRIPT", "cli", "images", "kubeconfig", "lab", "layout",
           "left_behind", "network", "run_node", "shell", "sweep", "why_not"]
