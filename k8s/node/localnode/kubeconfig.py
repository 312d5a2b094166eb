"""kubectl as the node's admin, and the context ``up`` adds to the user's kubeconfig."""

from __future__ import annotations

import shutil

from localnode.layout import ADMIN_KUBECONFIG, APISERVER, BIN, CONTEXT, PKI
from localnode.shell import run


def kubectl_bin() -> str:
    """The release's own kubectl once build.sh has it (it comes last), else the one on PATH."""
    own = BIN / "kubectl"
    return str(own) if own.exists() else shutil.which("kubectl") or str(own)


def kubectl(*args: str, timeout: float = 120, stdin: str | None = None,
            check: bool = True) -> str:
    return run(kubectl_bin(), "--kubeconfig", ADMIN_KUBECONFIG, *args, timeout=timeout,
               stdin=stdin, check=check)


def node_ready(name: str) -> bool:
    out = kubectl("get", "node", name, "-o",
                  'jsonpath={.status.conditions[?(@.type=="Ready")].status}', check=False)
    return out.strip() == "True"


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
