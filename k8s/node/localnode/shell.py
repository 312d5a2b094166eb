"""Running commands, waiting on conditions, and the node's two kinds of error.

A command's standard output is only ever read as data (``run`` returns it); whether
it succeeded is its exit status (``succeeds``), never whether it printed something.
"""

from __future__ import annotations

import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from localnode.layout import PKI


class NodeError(RuntimeError):
    """The node cannot do what was asked (one line, exit 1)."""


class UsageError(Exception):
    """Bad input or a machine the node cannot run on: one line, exit 2."""


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] node: {msg}", flush=True)


def run(*argv: str | Path, check: bool = True, timeout: float = 120,
        env: dict[str, str] | None = None, stdin: str | None = None) -> str:
    """The command's standard output; NodeError naming it when it fails and ``check``."""
    proc = subprocess.run([str(a) for a in argv], capture_output=True, text=True,
                          timeout=timeout, env=env, input=stdin)
    if check and proc.returncode != 0:
        err = (proc.stderr or proc.stdout).strip().splitlines()
        raise NodeError(f"{Path(str(argv[0])).name} {' '.join(map(str, argv[1:3]))} failed "
                        f"({proc.returncode}): {err[-1] if err else ''}")
    return proc.stdout


def succeeds(*argv: str | Path, timeout: float = 60) -> bool:
    """Whether the command exits 0 (its output is not looked at)."""
    try:
        return subprocess.run([str(a) for a in argv], stdin=subprocess.DEVNULL,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              timeout=timeout, check=False).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


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
