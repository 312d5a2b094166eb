"""A pre-imported parent that forks the local platform's instances.

Every instance of the lab is a new Python process that imports fastapi, pydantic,
redis and celery before it serves: about a CPU-second each, so 16 API replicas and 4
workers cost ~10 s of start-up on 2 cores. The fork server imports all of that once
(``python -m chaos.forkserver``, its own session) and then forks each instance from
itself, as gunicorn's ``--preload`` forks its workers. What a fault acts on stays a
real process: each forked instance calls ``setsid`` first, so it leads its own
session and process group exactly like a ``start_new_session`` child — a kill is
SIGKILL to that group, a terminate SIGTERM to its main process, a pause SIGSTOP to
the group — and a replacement is a new fork, a new process with a new pid.

What differs from an exec'd instance, and what it changes in what the lab measures:

- start-up: an instance is ready in the time its app takes to start, not to import;
  a replacement after a kill arrives sooner (its ``replace_delay`` is unchanged);
- ``ps`` shows ``python -m chaos.forkserver`` as every forked instance's command line,
  and ``/proc/PID/environ`` the fork server's environment (the lab tag is in both, so
  orphan checks still find them); the instance's own environment is ``os.environ``;
- an instance whose environment only takes effect at exec (``LD_PRELOAD`` with
  libfaketime for a clock skew, another ``PYTHONPATH``) is never forked:
  ``ForkServer.can_fork`` says no and the platform starts it as before;
- what the server preloaded is frozen (``gc.freeze``): an instance's cyclic collector
  never walks those objects (it collects what the instance itself allocates), so it
  does not copy the pages it shares with the server — and a cycle among preloaded
  objects is never freed, as in the server itself.

Several requests may be on the wire at once (the platform asks for all the instances
a round needs together): the server forks them in order, one reply each.

The protocol is one JSON object a line. Requests on the server's stdin:
``{"id": N, "module": M, "argv": [...], "env": {...}, "log": PATH, "cwd": DIR}``.
Replies on its stdout: ``{"ready": true, "threads": N}`` once preloaded,
``{"id": N, "pid": P}`` (or ``"error"``) per request, and ``{"exit": P, "code": C}``
when a child ends (C as ``Popen.returncode``: negative for a signal). The server
ends when its stdin closes; the watchdog covers its children as any other group.
"""

from __future__ import annotations

import atexit
import contextlib
import gc
import importlib
import json
import os
import runpy
import select
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any

# What each component's instances import before they serve, and as they start (what a
# forked instance still imported after the preload before these lists were complete: the
# scheduler and tzlocal in an API replica's lifespan, uvicorn's "auto" choices, anyio's
# asyncio backend at its first request (70 ms, the first /healthz answered late), the parts
# of celery a worker or beat loads on its way to ready).
PRELOAD_FOR = {
    "api": ("uvicorn", "uvicorn.main", "uvicorn.lifespan.on", "uvicorn.loops.asyncio",
            "uvicorn.loops.auto", "uvicorn.protocols.http.h11_impl",
            "uvicorn.protocols.http.auto", "uvicorn.protocols.websockets.auto",
            "services.api.app", "services.api.scheduler", "apscheduler.schedulers.asyncio",
            "apscheduler.executors.asyncio", "apscheduler.executors.pool",
            "apscheduler.jobstores.memory", "apscheduler.triggers.interval", "tzlocal",
            "concurrent.futures.process", "multiprocessing.queues",
            "fastapi.telemetry._runtime", "anyio._backends._asyncio", "anyio.streams.memory",
            "anyio.streams.stapled", "anyio.streams.tls"),
    "worker": ("services.worker.app", "services.worker.other_app", "celery.apps.worker",
               "celery.worker.consumer", "celery.worker.consumer.delayed_delivery",
               "celery.worker.components", "celery.worker.autoscale",
               "celery.worker.strategy", "celery.concurrency.prefork",
               "celery.backends.redis", "celery.app.amqp", "celery.app.control",
               "celery.app.events", "celery.app.log", "celery.app.routes", "celery.events",
               "celery.events.dispatcher", "celery.events.receiver", "celery.fixups.django",
               "celery.utils.deprecated", "billiard.heap", "billiard.popen_fork",
               "billiard.sharedctypes", "billiard.synchronize", "kombu.matcher",
               "kombu.mixins", "kombu.pidbox", "kombu.transport.redis", "mmap"),
    "beat": ("services.worker.beat", "services.worker.schedulers", "celery.apps.beat",
             "celery.worker.worker", "celery.app.amqp", "celery.app.log", "celery.app.routes",
             "celery.fixups.django", "celery.loaders.app", "celery.utils.deprecated",
             "billiard.einfo", "dbm.dumb", "encodings.latin_1", "kombu.transport.redis"),
}
PRELOAD = tuple(dict.fromkeys(m for modules in PRELOAD_FOR.values() for m in modules))


def preload_for(components: Sequence[str]) -> tuple[str, ...]:
    """What to preload for a topology of these components (a lab of API replicas only
    need not import celery before its first fork)."""
    return tuple(dict.fromkeys(m for c in components for m in PRELOAD_FOR.get(c, ())))
# Modules the server forks; anything else is exec'd as usual.
MODULES = frozenset({"services.api", "services.worker", "services.worker.beat"})
# Environment read only when a process starts (by the dynamic loader or the
# interpreter): an instance that sets these differently cannot be forked.
_AT_EXEC = ("LD_", "FAKETIME", "PYTHON", "DYLD_")
_SET_IN_CHILD = frozenset({"PYTHONUNBUFFERED", "PYTHONDONTWRITEBYTECODE"})


class ForkServerError(RuntimeError):
    """The fork server could not start or fork an instance."""


# --- the harness's side ----------------------------------------------------------------------
class Forked:
    """A forked instance, with the part of ``subprocess.Popen`` the platform uses."""

    def __init__(self, server: ForkServer, pid: int, args: list[str]) -> None:
        self.server, self.pid, self.args = server, pid, args
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            self.returncode = self.server.exit_code(self.pid)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while (code := self.poll()) is None:
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(self.args, timeout or 0.0)
            self.server.wait_exit(self.pid, 0.05)
        return code

    def send_signal(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, sig)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


class _ForkedHere:
    """The part of ``subprocess.Popen`` the handle uses, for a server forked from this
    process instead of exec'd: it has what this process imported, for nothing."""

    def __init__(self, preload: Sequence[str], env: Mapping[str, str]) -> None:
        to_server, from_server = os.pipe(), os.pipe()
        self.pid = os.fork()
        if self.pid == 0:  # the server: its own session, nothing of ours but its pipes
            code = 1
            try:
                os.setsid()
                os.dup2(to_server[0], 0)
                os.dup2(from_server[1], 1)
                os.closerange(3, os.sysconf("SC_OPEN_MAX"))
                os.environ.clear()
                os.environ.update(env)
                code = serve(preload)
            finally:
                os._exit(code)
        os.close(to_server[0])
        os.close(from_server[1])
        self.stdin: IO[bytes] | None = os.fdopen(to_server[1], "wb")
        self.stdout: IO[bytes] | None = os.fdopen(from_server[0], "rb")
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            with contextlib.suppress(ChildProcessError):
                pid, status = os.waitpid(self.pid, os.WNOHANG)
                if pid:
                    self.returncode = _exit_code(status)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while (code := self.poll()) is None:
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired("chaos.forkserver", timeout or 0.0)
            time.sleep(0.01)
        return code

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)


def can_fork_here(preload: Sequence[str]) -> bool:
    """Whether a server can be forked from this process: it has imported ``preload`` (as a
    harness forked by a suite's server has) and runs no other thread."""
    return threading.active_count() == 1 and all(m in sys.modules for m in preload)


class ForkServer:
    """Handle on a ``python -m chaos.forkserver`` process (see the module docstring), or on
    one forked from this process (``here``: see ``can_fork_here``)."""

    def __init__(self, env: Mapping[str, str], preload: Sequence[str] = PRELOAD,
                 cwd: str | None = None, modules: frozenset[str] = MODULES,
                 here: bool = False, stderr: IO[bytes] | None = None) -> None:
        self.env = dict(env)
        self.modules = modules
        self._proc: subprocess.Popen[bytes] | _ForkedHere
        if here:
            self._proc = _ForkedHere(preload, self.env)
        else:
            self._proc = subprocess.Popen(
                [sys.executable, "-u", "-m", "chaos.forkserver", *preload],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr,
                env=self.env, cwd=cwd, start_new_session=True)
        self.pid = self._proc.pid
        self.started_at = time.monotonic()
        self.ready_at: float | None = None  # when it said it had preloaded
        self._lock = threading.Lock()  # one request on the wire at a time
        self._changed = threading.Condition()
        self._replies: dict[int, dict[str, Any]] = {}
        self._exits: dict[int, int] = {}
        self._ready: dict[str, Any] | None = None
        self._serial = 0
        self._reader = threading.Thread(target=self._read, name="forkserver-reader",
                                        daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self._proc.stdout is not None
        for raw in self._proc.stdout:
            message = json.loads(raw)
            with self._changed:
                if "exit" in message:
                    self._exits[int(message["exit"])] = int(message["code"])
                elif "ready" in message:
                    self._ready = message
                    self.ready_at = time.monotonic()
                else:
                    self._replies[int(message["id"])] = message
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def alive(self) -> bool:
        return self._proc.poll() is None

    def wait_ready(self, timeout: float = 60.0) -> dict[str, Any]:
        """Block until the server has imported what it preloads; what it reported."""
        with self._changed:
            if not self._changed.wait_for(lambda: self._ready is not None or not self.alive(),
                                          timeout):
                raise ForkServerError(f"the fork server did not preload in {timeout:g}s")
        if self._ready is None:
            raise ForkServerError(f"the fork server exited ({self._proc.poll()})")
        return self._ready

    def can_fork(self, args: Sequence[str], env: Mapping[str, str]) -> bool:
        """Is ``args`` (``python -m MODULE ...``) with ``env`` something it can fork?"""
        if (len(args) < 3 or args[0] != sys.executable or args[1] != "-m"
                or args[2] not in self.modules or not self.alive()):
            return False
        keys = {k for k in (*env, *self.env) if k.startswith(_AT_EXEC)} - _SET_IN_CHILD
        return all(env.get(k) == self.env.get(k) for k in keys)

    def popen(self, args: Sequence[str], env: Mapping[str, str], log: Path,
              cwd: str | None = None, timeout: float = 60.0) -> Forked:
        """Fork ``python -m MODULE ARGS`` with ``env``; its output appended to ``log``."""
        if not self.can_fork(args, env):
            raise ForkServerError(f"cannot fork {' '.join(args)}")
        with self._lock:
            self._serial += 1
            serial = self._serial
            request = {"id": serial, "module": args[2], "argv": list(args[3:]),
                       "env": dict(env), "log": str(log), "cwd": cwd}
            stdin = self._proc.stdin
            assert stdin is not None
            try:
                stdin.write(json.dumps(request).encode() + b"\n")
                stdin.flush()
            except (BrokenPipeError, OSError) as exc:
                raise ForkServerError(f"the fork server is gone: {exc}") from None
        with self._changed:
            if not self._changed.wait_for(lambda: serial in self._replies or not self.alive(),
                                          timeout):
                raise ForkServerError(f"no answer from the fork server in {timeout:g}s")
            reply = self._replies.pop(serial, None)
        if reply is None or "pid" not in reply:
            why = reply.get("error") if reply else f"it exited ({self._proc.poll()})"
            raise ForkServerError(f"the fork server could not fork {args[2]}: {why}")
        return Forked(self, int(reply["pid"]), list(args))

    def exit_code(self, pid: int) -> int | None:
        """The child's exit code once the server has reaped it; None while it runs."""
        with self._changed:
            if pid in self._exits:
                return self._exits[pid]
        if self.alive() or self._reader.is_alive():
            return None
        # The server is gone: its children went to init, which reaps them; say killed.
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return -signal.SIGKILL
        return None

    def wait_exit(self, pid: int, timeout: float) -> None:
        with self._changed:
            self._changed.wait_for(lambda: pid in self._exits or not self.alive(), timeout)

    def close(self, timeout: float = 5.0) -> None:
        """End the server (its stdin closes); instances it forked are the platform's."""
        with contextlib.suppress(BrokenPipeError, OSError):
            if self._proc.stdin is not None:
                self._proc.stdin.close()
        try:
            self._proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait(timeout=5)
        self._reader.join(timeout=5)
        if self._proc.stdout is not None:
            self._proc.stdout.close()


_prestarted: list[ForkServer] = []


def prestart(env: Mapping[str, str], preload: Sequence[str] = PRELOAD) -> bool:
    """Fork the instances' server now, while this process runs one thread (a harness a
    suite forked, before its run starts threads), for the platform to ``take``."""
    if _prestarted or not can_fork_here(preload):
        return False
    _prestarted.append(ForkServer(env, preload, here=True))
    return True


def take() -> ForkServer | None:
    """The server ``prestart`` forked, once; None if there is none."""
    return _prestarted.pop() if _prestarted else None


def discard() -> None:
    """End a prestarted server no platform took (the run stopped before its deploy)."""
    while _prestarted:
        _prestarted.pop().close()


# --- the server ------------------------------------------------------------------------------
def _send(message: dict[str, Any]) -> None:
    os.write(1, json.dumps(message).encode() + b"\n")


def _exit_code(status: int) -> int:
    if os.WIFSIGNALED(status):
        return -os.WTERMSIG(status)
    return os.WEXITSTATUS(status)


def _child(request: dict[str, Any]) -> int:
    """In the forked child: become the instance, run its module as ``__main__``."""
    os.setsid()  # its own session and process group: faults reach exactly this instance
    log = os.open(request["log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(log)
    os.close(null)
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGCHLD):
        signal.signal(sig, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    if request.get("cwd"):
        os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    sys.dont_write_bytecode = bool(os.environ.get("PYTHONDONTWRITEBYTECODE"))
    gc.enable()  # as in any interpreter; what the server preloaded stays frozen
    sys.argv = [request["module"], *request["argv"]]
    code = 0
    try:
        runpy.run_module(request["module"], run_name="__main__", alter_sys=True)
    except SystemExit as exc:
        if exc.code is None or isinstance(exc.code, int):
            code = exc.code or 0
        else:
            print(exc.code, file=sys.stderr)
            code = 1
    except BaseException:
        traceback.print_exc()
        code = 1
    with contextlib.suppress(Exception):
        atexit._run_exitfuncs()  # what an exiting interpreter runs (logging's flush...)
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    return code


def serve(preload: Sequence[str]) -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the harness ends us by closing stdin
    gc.disable()  # no collection halfway through the imports: one, then freeze
    for name in preload:
        with contextlib.suppress(Exception):
            importlib.import_module(name)
    # Every preloaded object to the permanent generation: an instance's collections then
    # never walk them, and so never write to (and copy) the pages it shares with us.
    gc.collect()
    gc.freeze()
    threads = threading.active_count()
    _send({"ready": True, "threads": threads})
    pending = b""
    while True:
        readable, _, _ = select.select([0], [], [], 0.05)
        while True:  # reap and report every child that ended
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            _send({"exit": pid, "code": _exit_code(status)})
        if not readable:
            continue
        data = os.read(0, 1 << 16)
        if not data:  # the harness is done; nothing of ours to flush or finalize
            os._exit(0)
        pending += data
        *lines, pending = pending.split(b"\n")
        for line in lines:
            request = json.loads(line)
            if threads != 1:  # a preloaded module started a thread: forking it is unsafe
                _send({"id": request["id"], "error": f"{threads} threads after preload"})
                continue
            pid = os.fork()
            if pid == 0:
                code = 1
                try:
                    code = _child(request)
                finally:
                    os._exit(code)
            _send({"id": request["id"], "pid": pid})


if __name__ == "__main__":
    sys.exit(serve(sys.argv[1:]))
