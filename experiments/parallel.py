"""Several experiment runs at once, each its own harness process.

The suite hands each child its order as data (``<n>.order.json``: experiment,
parameter values, seed, platform); the child runs it and prints its summary.

A run's harness owns its platform (ports, directories, lab tag) and its teardown,
so running variants side by side is running harnesses side by side. They start
cheaply: one fork server for the whole suite imports what a harness and every
instance import, once, and forks each harness from itself (its own session all the
same); that harness forks its instances' server from itself in turn, before its run
starts a thread (``chaos.forkserver.prestart``), so neither imports anything: a
run's start costs a fork, not the seconds of imports an exec'd harness and its
exec'd fork server paid each. Each child is
its own process group, reported to a watchdog: if this process dies, the watchdog
kills the children, whose own watchdogs kill their instances. On Ctrl-C each child
is asked to stop (SIGINT, as the terminal would) and waited for.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chaos.forkserver import PRELOAD, ForkServer, ForkServerError
from chaos.processes import LAB_TAG, Group, Watchdog

HARNESS = "experiments.cli"  # what a harness runs (``run-child``)
# What a harness imports before its run, besides what the instances import.
HARNESS_PRELOAD = (HARNESS, "experiments.runner", "experiments.catalog", "experiments.store",
                   "chaos.local", "chaos.nemesis", "services.ledger")


@dataclass
class ChildRun:
    """One run to do (its order), and, once done, what it printed."""

    label: str
    order: dict[str, Any]
    weight: float = 0.0  # how long it may take, at most: the longest are started first
    returncode: int | None = None
    summary: dict[str, Any] | None = None
    error: str = ""


def _parse(child: ChildRun, log: Path) -> None:
    lines = log.read_text(errors="replace").splitlines()
    for line in reversed(lines):
        if line.startswith("{"):
            try:
                child.summary = json.loads(line)
                return
            except json.JSONDecodeError:
                break
    last = next((ln for ln in reversed(lines) if ln.strip()), "no output")
    child.error = last.removeprefix("scalelab: error: ")


def run_children(children: list[ChildRun], jobs: int, logs: Path,
                 env: dict[str, str] | None = None,
                 on_done: Callable[[ChildRun], None] | None = None) -> list[ChildRun]:
    """Run every child, at most ``jobs`` at a time; returns them with their outcome.
    ``on_done`` is called with each child as it ends (while the others run)."""
    logs.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ) if env is None else env
    # The children (and through them every instance) carry this suite's lab tag.
    watchdog = Watchdog(env.get(LAB_TAG) or f"suite-{uuid.uuid4().hex[:8]}")
    # Longest first: a long run started last would run alone at the end.
    pending = sorted(enumerate(children), key=lambda pair: -pair[1].weight)
    running: list[tuple[ChildRun, Group, Path]] = []
    forks = _harness_server(env, watchdog, logs) if len(children) > 1 else None
    try:
        while pending or running:
            while pending and len(running) < jobs:
                i, child = pending.pop(0)
                log = logs / f"{i:02d}.log"
                order = logs / f"{i:02d}.order.json"
                order.write_text(json.dumps(child.order), encoding="utf-8")
                argv = [sys.executable, "-m", HARNESS, "run-child", str(order)]
                running.append((child, Group(argv, env, log, watchdog, spawner=forks), log))
            for entry in list(running):
                child, group, log = entry
                if not group.alive():
                    group.reap(timeout=1)
                    child.returncode = group.proc.returncode
                    _parse(child, log)
                    running.remove(entry)
                    if on_done is not None:
                        on_done(child)
            time.sleep(0.1)
    except BaseException:
        for _, group, _ in running:  # each harness tears its own lab down
            group.signal_main(signal.SIGINT)
        for _, group, _ in running:
            group.reap(timeout=60)
        raise
    finally:
        if forks is not None:
            forks.close()
        watchdog.close()
    return children


def _harness_server(env: dict[str, str], watchdog: Watchdog, logs: Path) -> ForkServer | None:
    """The suite's fork server for its harnesses; None (each harness exec'd) if it cannot
    preload (what it could not is in its log)."""
    with open(logs / "forkserver.log", "ab") as log:
        forks = ForkServer({**env, LAB_TAG: watchdog.tag}, (*PRELOAD, *HARNESS_PRELOAD),
                           modules=frozenset({HARNESS}), stderr=log)
    watchdog.watch(forks.pid)
    try:
        forks.wait_ready()
    except ForkServerError:
        forks.close()
        return None
    return forks
