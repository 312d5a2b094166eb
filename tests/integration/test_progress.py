"""Live progress of a real run: under a pseudo-terminal 80 columns wide, and piped."""

from __future__ import annotations

import fcntl
import io
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path
from typing import Any

from rich.console import Console

from experiments.live import Status
from experiments.progress import PlainProgress, RunProgress, Silent, live
from tests.conftest import LAB_TAG, REPO

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
RUN = ["run", "scheduler-duplicates", "--replicas", "2", "--duration", "3", "--no-plot"]


def test_the_hook_follows_where_it_is_drawn() -> None:
    assert isinstance(live(Console(file=io.StringIO()), "x"), PlainProgress)  # piped
    terminal = Console(file=io.StringIO(), force_terminal=True, width=80)
    assert isinstance(live(terminal, "x", quiet=True), Silent)  # --json
    hook = live(terminal, "a-label-much-longer-than-the-room-an-eighty-column-line-has")
    assert isinstance(hook, RunProgress)
    with hook:
        for phase, faults in (("running", ("kill api-2",)), ("checking", ("kill api-2",))):
            hook(Status(phase, 3.0, 3.0, 9.5, executions=12, lost=1, duplicated=4,
                        faults=faults))
            lines = [line.plain for line in hook.render().renderables]  # type: ignore[attr-defined]
            assert all(len(line) <= 80 for line in lines), lines
            assert lines[1] == ("  executions 12 · lost 1 · duplicated 4 · faults 1 "
                                "(kill api-2)")
    assert hook.phases == ["running", "checking"]


def test_progress_under_a_pseudo_terminal_fits_80_columns_and_never_stops(
        lab_tag: str, tmp_path: Path) -> None:
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    env = {**os.environ, LAB_TAG: lab_tag, "TERM": "xterm-256color", "COLUMNS": "80"}
    env.pop("NO_COLOR", None)
    with subprocess.Popen([sys.executable, "-m", "experiments.cli", *RUN, "--results",
                           str(tmp_path / "results")], stdin=follower, stdout=follower,
                          stderr=follower, cwd=REPO, env=env) as proc:
        os.close(follower)
        out = b""
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            ready, _, _ = select.select([leader], [], [], 1)
            if ready:
                try:
                    chunk = os.read(leader, 65536)
                except OSError:  # the terminal closed: the run ended
                    break
                if not chunk:
                    break
                out += chunk
            elif proc.poll() is not None:
                break
        proc.wait(10)
        os.close(leader)
    assert proc.returncode == 0, out[-2000:]
    text = ANSI.sub("", out.decode("utf-8", "replace")).replace("\r", "\n")
    frames = [line for line in text.split("\n") if line.strip()]
    assert all(len(line) <= 80 for line in frames), max(frames, key=len)
    drawn = [line for line in frames if line.startswith(tuple("⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"))]
    phases = {p for line in drawn for p in ("starting instances", "running", "draining",
                                            "stopping instances", "tearing down",
                                            "checking") if f" {p} " in line}
    assert {"running", "draining", "tearing down", "checking"} <= phases, phases
    clocks = [line.split()[-1] for line in drawn]
    assert len(set(clocks)) >= 4  # the clock went on
    counts = [line for line in frames if line.startswith("  executions ")]
    final = counts[-1]
    assert re.search(r"duplicated [1-9]", final), final  # 2 replicas: every tick twice
    # the work and the claim, said apart, and the fix after the duplication
    assert "work:" in text and "claim: demonstrated" in text
    assert "scalelab run scheduler-duplicates" in text and "--guard redis-lock" in text


def test_progress_piped_is_one_line_per_phase(scalelab: Any) -> None:
    r = scalelab(*RUN)
    assert r.returncode == 0, r.stderr
    lines = r.stderr.strip().splitlines()
    phases = [re.match(r"\[\s*\d+:\d\d\] scheduler-duplicates: ([a-z ]+?)( \d|  ·| ·)",
                       line) for line in lines]
    said = [m.group(1) for m in phases if m]
    assert said[-4:] == ["draining", "stopping instances", "tearing down", "checking"], lines
    assert "running" in said
    assert len(said) == len(lines)  # nothing else on stderr


def test_a_plain_line_says_the_counts_and_the_faults() -> None:
    console = Console(file=io.StringIO(), width=200)
    hook = PlainProgress(console, "x")
    hook(Status("starting instances", clock=0.5))  # a start says nothing until the window
    hook(Status("running", 0.0, 3.0, 1.0))
    hook(Status("draining", 3.0, 3.0, 12.2, executions=3, duplicated=1,
                faults=("kill api-2",)))
    hook(Status("draining", 3.0, 3.0, 13.0, executions=3, duplicated=1,
                faults=("kill api-2",)))  # the same phase, within EVERY: no new line
    assert console.file.getvalue().splitlines() == [  # type: ignore[attr-defined]
        "[ 0:01] x: running 0.0/3 s · executions 0 · lost 0 · duplicated 0 · faults 0",
        "[ 0:12] x: draining · executions 3 · lost 0 · duplicated 1 · faults 1 (kill api-2)"]
    hook(Status("draining", 3.0, 3.0, 22.5))  # a long phase: a line every EVERY seconds
    assert len(console.file.getvalue().splitlines()) == 3  # type: ignore[attr-defined]
