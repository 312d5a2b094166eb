"""Shared test helpers: run the real CLI, and find any process a lab left behind."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from chaos.processes import LAB_TAG, Watchdog, lab_processes
from chaos.redis_server import RedisServer

REPO = Path(__file__).resolve().parent.parent


def wait_for(condition: Any, timeout: float, what: str, interval: float = 0.05) -> Any:
    """Poll ``condition`` until it returns something truthy; fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)


@dataclass
class CliResult:
    returncode: int
    stdout: str
    stderr: str

    @property
    def summary(self) -> dict[str, Any]:
        lines = self.stdout.strip().splitlines()
        assert lines, f"no output; stderr: {self.stderr}"
        parsed: dict[str, Any] = json.loads(lines[-1])
        return parsed


@pytest.fixture
def lab_tag(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A tag on every process this test's labs start; none may outlive the test."""
    tag = f"test-{uuid.uuid4().hex[:12]}"
    monkeypatch.setenv(LAB_TAG, tag)
    yield tag
    deadline = time.monotonic() + 10
    while (left := lab_processes(tag)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not left, f"orphans outlived the lab: {left}"


@contextlib.contextmanager
def redis_server(role: str, lab_tag: str, workdir: Path) -> Iterator[RedisServer]:
    """The lab's own redis-server (``role``: ledger or broker), tagged for the orphan
    check, stopped however the test ends."""
    watchdog = Watchdog(lab_tag)
    server = RedisServer(role, workdir, watchdog)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        watchdog.close()


def _as_a_terminal_would() -> None:
    # A command started in the background by a shell without job control (`make test
    # &`, a CI step's script) inherits SIGINT ignored, and Python keeps it ignored: the
    # harness must get Ctrl-C as it would in a terminal's foreground.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start_scalelab(lab_tag: str, *args: str) -> subprocess.Popen[str]:
    """Start ``scalelab ARGS`` for real, to be signalled as a user or CI would: Ctrl-C
    (SIGINT), a cancel (SIGTERM), a crash (SIGKILL); its output piped."""
    return subprocess.Popen([sys.executable, "-m", "experiments.cli", *args],
                            env={**os.environ, LAB_TAG: lab_tag}, cwd=REPO, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            preexec_fn=_as_a_terminal_would)


@pytest.fixture
def scalelab(lab_tag: str, tmp_path: Path) -> Any:
    """Run ``scalelab ARGS`` for real in a subprocess, results under tmp_path; a run
    draws no timeline.png unless the test asks (``--plot``): the plot has its own tests."""

    def run(*args: str, timeout: float = 120) -> CliResult:
        argv = [sys.executable, "-m", "experiments.cli", *args]
        if args and args[0] in ("run", "suite") and "--results" not in args:
            argv += ["--results", str(tmp_path / "results")]
        if args and args[0] == "run" and "--plot" not in args:
            argv.append("--no-plot")
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                              env={**os.environ, LAB_TAG: lab_tag}, cwd=REPO)
        return CliResult(proc.returncode, proc.stdout, proc.stderr)

    return run


@pytest.fixture
def scalelab_here(lab_tag: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Any:
    """The same CLI, called in this process (``main(argv)``): for input it refuses
    before it starts anything, where a subprocess would only add its start-up."""
    from experiments.cli import main

    def run(*args: str) -> CliResult:
        argv = list(args)
        if args and args[0] in ("run", "suite") and "--results" not in args:
            argv += ["--results", str(tmp_path / "results")]
        capsys.readouterr()
        previous = signal.getsignal(signal.SIGTERM)
        try:
            main(argv)
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        finally:
            signal.signal(signal.SIGTERM, previous)
        out, err = capsys.readouterr()
        return CliResult(code, out, err)

    return run
