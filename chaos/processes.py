"""Process groups for the local platform: start, signal, and never leak.

Every process the local platform starts is the leader of its own process group
(``start_new_session``), so a fault reaches the whole instance — a Celery worker
and its pool children — as a container runtime's would, and the terminal's Ctrl-C
reaches only the harness, which then tears down in order. Each group is reported
to the watchdog, which kills what is left if the harness dies.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Protocol

from chaos.platform import PlatformError

LAB_TAG = "SCALELAB_LAB"  # environment mark on every process a lab starts (orphan checks)


class Watchdog:
    """Handle on the ``chaos.watchdog`` process (see its module docstring)."""

    def __init__(self, tag: str) -> None:
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "chaos.watchdog"],
            stdin=subprocess.PIPE,
            start_new_session=True,
            text=True,
            env={**os.environ, LAB_TAG: tag},
        )
        self.tag = tag
        self._lock = threading.Lock()

    def _send(self, line: str) -> None:
        with self._lock:
            stdin = self._proc.stdin
            if stdin is None or stdin.closed:
                return
            with contextlib.suppress(BrokenPipeError, OSError):
                stdin.write(line + "\n")
                stdin.flush()

    def watch(self, pgid: int) -> None:
        self._send(f"+{pgid}")

    def forget(self, pgid: int) -> None:
        self._send(f"-{pgid}")

    def close(self) -> None:
        with self._lock:
            if self._proc.stdin is not None and not self._proc.stdin.closed:
                with contextlib.suppress(BrokenPipeError, OSError):
                    self._proc.stdin.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._proc.wait(timeout=5)


class Child(Protocol):
    """The part of ``subprocess.Popen`` a group uses (a fork server's child has it too)."""

    pid: int
    returncode: int | None

    def poll(self) -> int | None: ...

    def wait(self, timeout: float | None = None) -> int: ...


class Spawner(Protocol):
    """Starts ``python -m MODULE`` instances without exec (``chaos.forkserver``)."""

    def can_fork(self, args: Sequence[str], env: Mapping[str, str]) -> bool:
        """Whether this instance can be forked (else it is exec'd as usual)."""

    def popen(self, args: Sequence[str], env: Mapping[str, str], log: Path,
              cwd: str | None = None) -> Child:
        """Fork it, its own session and process group, its output appended to ``log``."""


class Group:
    """One started process and its process group.

    With a ``spawner`` that can fork it, the process is forked by a pre-imported parent
    (its own session and group all the same); otherwise it is exec'd.
    """

    def __init__(self, args: list[str], env: dict[str, str], log_path: Path,
                 watchdog: Watchdog, cwd: str | None = None,
                 spawner: Spawner | None = None) -> None:
        self.args = args
        self.log_path = log_path
        self._log: IO[bytes] = open(log_path, "ab")  # noqa: SIM115 - closed in reap()
        full = {**env, LAB_TAG: watchdog.tag}
        self.proc: Child
        forked: Child | None = None
        if spawner is not None and spawner.can_fork(args, full):
            with contextlib.suppress(RuntimeError):  # it could not after all: exec'd
                forked = spawner.popen(args, full, log_path, cwd)
        if forked is not None:
            self.proc = forked
        else:
            self.proc = subprocess.Popen(args, env=full, stdout=self._log,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         start_new_session=True, cwd=cwd)
        self.pid = self.proc.pid
        self._watchdog = watchdog
        watchdog.watch(self.pid)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def signal_group(self, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, sig)

    def signal_main(self, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, sig)

    def kill(self) -> None:
        """SIGKILL the whole group (a stopped process dies of SIGKILL too)."""
        self.signal_group(signal.SIGKILL)

    def reap(self, timeout: float = 5.0) -> None:
        """Wait for the main process, SIGKILL what is left of the group, forget it."""
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            self.proc.wait(timeout=5)
        self.signal_group(signal.SIGKILL)  # pool children left behind, as a runtime would
        self._watchdog.forget(self.pid)
        self._log.close()

    def stop(self, grace: float) -> None:
        """SIGTERM the main process; SIGKILL the group after ``grace`` seconds."""
        if self.alive():
            self.signal_group(signal.SIGCONT)  # a paused process cannot handle SIGTERM
            self.signal_main(signal.SIGTERM)
        self.reap(timeout=grace)

    def tail(self, lines: int = 5) -> str:
        try:
            text = self.log_path.read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return " | ".join(text[-lines:])


def lab_processes(tag: str) -> list[tuple[int, str]]:
    """``(pid, command)`` of every live process carrying this lab tag (Linux /proc)."""
    found = []
    needle = f"{LAB_TAG}={tag}".encode()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                environ = f.read().split(b"\0")
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
            with open(f"/proc/{entry}/stat", "rb") as f:
                zombie = f.read().rsplit(b")", 1)[-1].split()[0] == b"Z"
            cwd = os.readlink(f"/proc/{entry}/cwd")
        except OSError:
            continue
        # redis-server overwrites its environ with its process title; its working
        # directory (named with the tag) still tells it apart.
        if (needle in environ or tag in cwd) and not zombie:
            found.append((int(entry), cmd))
    return found


def free_port() -> int:
    """A TCP port on loopback that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class PortTaken(Exception):
    """Another process took the server's free port before it could bind it (a race)."""


class OnFreePort:
    """A server on loopback ``port``: a free one, unless the user chose it (``fixed_port``).

    ``_start`` starts it on ``port`` and raises ``PortTaken`` when the port was taken
    meanwhile; ``start_on_port`` then tries another free port, or says in one line that
    the port the user chose is in use.
    """

    port: int
    fixed_port: bool
    TRIES = 5

    def _start(self, timeout: float) -> None:
        raise NotImplementedError

    def start_on_port(self, timeout: float, what: str, choose: str = "") -> None:
        """``_start``, on another free port each time the last was taken (``what``: the
        server in the error; ``choose``: how the user picks a port, in brackets)."""
        for _ in range(self.TRIES):
            try:
                self._start(timeout)
                return
            except PortTaken:
                if self.fixed_port:
                    where = f" ({choose})" if choose else ""
                    raise PlatformError(f"port {self.port} for {what} is already in use; "
                                        f"choose another{where} or stop what holds it"
                                        ) from None
                self.port = free_port()
        raise PlatformError(f"no free port for {what} after {self.TRIES} tries")
