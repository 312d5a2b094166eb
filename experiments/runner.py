"""Runs an experiment on a platform and judges it.

deploy -> open the run in the ledger -> workload + nemesis for the duration ->
drain (acknowledged work may still finish) -> close the run -> read the history ->
check -> write the run directory. The platform is torn down whatever happens,
Ctrl-C included. The run directory is written as ``<name>.partial`` and renamed
only when complete; a run that fails is left as ``<name>.failed`` with its logs.
"""

from __future__ import annotations

import contextlib
import json
import random
import shutil
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from chaos.apscheduler4 import PINNED as APSCHEDULER4
from chaos.faults import ENDING
from chaos.nemesis import LedgerTail, Nemesis
from chaos.platform import Platform, PlatformError
from chaos.platforms import PlatformFactory
from experiments import fastcheck
from experiments.checker import Result, check, executions_by_component, ledger_integrity
from experiments.live import INTERRUPTED_JSON, PROGRESS_JSON, Hook, Status, Watch
from experiments.model import Experiment, rule_of
from experiments.store import schedules_to_json, write_run
from experiments.summary import Summary
from experiments.workload import PublishClient, RequestClient, TaskClient
from services import keys
from services.ledger import Event, Kind, Ledger
from services.settings import LabSettings


def _quiet(status: Status) -> None:
    return None



@dataclass
class Run:
    """A finished run: where it is stored, its summary and the checker's result."""

    directory: Path
    summary: Summary
    result: Result
    events: list[Event]


def versions(ledger: Ledger) -> dict[str, str]:
    found: dict[str, str] = {}
    for dist in ("celery", "kombu", "redis", "apscheduler", "arq", "celery-redbeat", "fastapi",
                 "uvicorn"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            found[dist] = metadata.version(dist)
    with contextlib.suppress(Exception):
        info = ledger.client.info("server")
        found["redis-server"] = str(info.get("redis_version", ""))
    return found


def new_run_directory(results: Path, name: str) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    base = results / f"{stamp}-{name}"
    final, n = base, 1
    while final.exists() or final.with_name(final.name + ".partial").exists():
        n += 1
        final = base.with_name(f"{base.name}-{n}")
    return final


def _claim_run_directory(results: Path, name: str) -> tuple[Path, Path]:
    """A new run directory and its ``.partial`` working copy, made atomically: runs of one
    experiment that a suite starts in the same second (forked harnesses) each get their own."""
    while True:
        final = new_run_directory(results, name)
        workdir = final.with_name(final.name + ".partial")
        try:
            workdir.mkdir(parents=True)
        except FileExistsError:  # another harness claimed that name between look and make
            continue
        return final, workdir


class _NotStarted(Exception):
    def __init__(self, error: PlatformError) -> None:
        super().__init__(str(error))
        self.error = error


def run_experiment(
    experiment: Experiment,
    make_platform: PlatformFactory,
    results: Path,
    seed: int,
    progress: Hook = _quiet,
    platform_options: Mapping[str, Any] | None = None,
    plot: bool = True,
    label: str | None = None,
) -> Run:
    """Run ``experiment`` and store it under ``results``; ``label``: how a suite names
    this run (its variant), recorded with it."""
    final, workdir = _claim_run_directory(results, experiment.name)
    watch = Watch(progress, experiment.workload.duration, workdir)
    try:
        try:
            platform = make_platform(workdir / "logs")
        except PlatformError as exc:
            raise _NotStarted(exc) from exc
        run = _run(experiment, platform, workdir, seed, watch, platform_options or {}, plot,
                   label)
    except _NotStarted as exc:
        # Nothing ran (no platform, or it could not deploy): leave no directory behind.
        watch.stop()
        shutil.rmtree(workdir, ignore_errors=True)
        raise exc.error from None
    except BaseException as exc:
        watch.stop()
        stopped_by = interrupting_signal(exc)
        if stopped_by is not None:
            record_interruption(workdir, stopped_by, watch.halted_in or watch.status)
        with contextlib.suppress(OSError):
            workdir.rename(final.with_name(final.name + (".interrupted" if stopped_by
                                                         else ".failed")))
        raise
    watch.stop()
    with contextlib.suppress(OSError):
        (workdir / PROGRESS_JSON).unlink()  # the run is stored: its summary says the rest
    workdir.rename(final)
    run.directory = final
    return run


def interrupting_signal(exc: BaseException) -> str | None:
    """The signal an exception stands for: Ctrl-C, or one the CLI turned into an exception
    with a ``signal`` attribute (SIGTERM); None for a failure."""
    if isinstance(exc, KeyboardInterrupt):
        return "SIGINT"
    named = getattr(exc, "signal", None)
    return named if isinstance(named, str) else None


def record_interruption(directory: Path, signal_name: str, status: Status) -> None:
    """``interrupted.json``: which signal stopped the run, in which phase, how far in."""
    record = {"state": "interrupted", "signal": signal_name, "phase": status.phase,
              "clock": round(status.clock, 2), "run_window_elapsed": round(status.elapsed, 2),
              "at": datetime.now(UTC).isoformat(timespec="seconds")}
    with contextlib.suppress(OSError):
        (directory / INTERRUPTED_JSON).write_text(json.dumps(record, indent=2) + "\n",
                                             encoding="utf-8")


def _run(experiment: Experiment, platform: Platform, workdir: Path, seed: int,
         watch: Watch, platform_options: Mapping[str, Any], plot: bool,
         label: str | None = None) -> Run:
    rng = random.Random(seed)
    run_id = uuid.UUID(int=rng.getrandbits(128)).hex[:12] + "-" + uuid.uuid4().hex[:4]
    wall_started = time.monotonic()
    w = experiment.workload
    try:
        try:
            platform.deploy(experiment.topology)
        except PlatformError as exc:
            platform.teardown()
            raise _NotStarted(exc) from exc
        ledger = Ledger.from_url(platform.ledger_url)
        # The clients are made (Celery imported, its app built) before the run's clock
        # starts: a client that started late would catch up in a burst, and the timed
        # faults would meet that burst instead of the workload asked for.
        clients: list[RequestClient | TaskClient | PublishClient] = [
            RequestClient(platform, ledger, load, f"req{i}" if i else "req", w.duration)
            for i, load in enumerate(w.requests)
        ]
        clients += [PublishClient(ledger, platform.broker_url, load, str(i), w.duration)
                    for i, load in enumerate(w.publish)]
        if w.tasks is not None:
            settings = LabSettings.model_validate({
                **experiment.topology.settings,
                "broker_url": platform.broker_url, "ledger_url": platform.ledger_url})
            clients.append(TaskClient(ledger, settings, w.tasks, w.duration))
        t0 = ledger.begin_run(run_id)
        started = time.monotonic()
        nemesis = Nemesis(platform, ledger, run_id, list(experiment.faults), rng, started)
        for c in clients:
            c.begin(started)
        nemesis.start()
        watch.follow(ledger, run_id, t0, experiment.schedules, experiment.late_after)
        while (elapsed := time.monotonic() - started) < w.duration:
            time.sleep(min(0.2, max(0.0, w.duration - elapsed)))
        t1 = ledger.now()
        for c in clients:
            c.stop()
        for c in clients:
            c.join(timeout=10)
            c.close()
        watch.phase("draining")
        _drain(ledger, run_id, experiment, nemesis, platform.broker_url)
        nemesis.stop()
        ledger.end_run()
        watch.phase("stopping instances")
        history = fastcheck.read_history(ledger, run_id)
        vers = versions(ledger)
        if experiment.topology.settings.get("scheduler_library") == "apscheduler4":
            # what the API replicas ran, not the harness's APScheduler 3
            vers["apscheduler"] = f"{APSCHEDULER4} (pre-release)"
        # Each instance reports, as it shuts down gracefully, how many events it recorded:
        # an account of the ledger kept apart from the ledger itself.
        schedules = experiment.schedules
        if experiment.announced is not None:
            schedules = (*schedules, *experiment.announced(ledger.instances()))
        platform.stop_instances()
        instance_counts = ledger.counts(run_id)
    except BaseException:
        watch.halted()  # the phase it was in is what an interruption records
        raise
    finally:
        watch.stop_reading()
        watch.phase("tearing down")
        platform.teardown()
    watch.phase("checking")
    # The fast path, the reference checker where it does not vouch for a line.
    result = history.check((t0, t1), schedules, experiment.late_after)
    events = history.events()
    integrity = ledger_integrity(events, instance_counts)
    verdict = experiment.verdict(result, integrity, nemesis.errors)
    measured = experiment.figures(events, result)
    summary: Summary = {
        "experiment": experiment.name,
        "platform": platform.name,
        "platform_options": dict(platform_options),
        "as_run": dict(platform.as_run),
        "seed": seed,
        "run_id": run_id,
        "parameters": dict(experiment.parameters),
        "window": {"start": t0, "end": t1, "duration": round(t1 - t0, 3)},
        "schedules": schedules_to_json(schedules),
        "late_after": experiment.late_after,
        **result.to_json(),  # type: ignore[typeddict-item]
        "measured": measured,
        "faults": [r.to_json() for r in nemesis.records],
        "mid_job_faults": {
            "fired": sum(1 for r in nemesis.records if r.mid_job),
            "with_work_in_flight": sum(1 for r in nemesis.records if r.mid_job and r.inflight),
        },
        "fault_errors": nemesis.errors,
        "requests": {"sent": sum(c.sent for c in clients),
                     "acknowledged": sum(c.acknowledged for c in clients),
                     "failed": sum(c.failed for c in clients)},
        "topology": dict(experiment.topology.replicas),
        "executions_by_component": executions_by_component(events, result),
        "instance_counts": instance_counts,
        "ledger_integrity": integrity,
        "verdict": verdict.outcome,
        "valid": verdict.demonstrated,
        "expectation": verdict.sentence,
        **({"judge": rule_of(experiment.judge)} if experiment.judge else {}),
        "versions": vers,
        "wall_seconds": round(time.monotonic() - wall_started, 2),
    }
    if label:
        summary["label"] = label
    write_run(workdir, summary, events, result, plot=plot)
    return Run(workdir, summary, result, events)


def settled(events: list[Event], redelivers: bool, result: Result | None = None) -> bool:
    """Nothing more can happen: no execution in doubt, no acknowledged unit still to run.

    Where a fault leads to redelivery (``redelivers``), an interrupted unit may still
    run again, so only a finish settles it; a unit whose instance was ended right
    after its effect (before the ack) is settled only once it has started again.
    ``result``: the check of ``events``, when the caller has it already.
    """
    r = result if result is not None else check(events)
    if r.counts["in_doubt"]:
        return False
    pending = [u for u in r.units.values() if u.acknowledged and u.finishes == 0]
    if not redelivers:
        return all(u.starts for u in pending)
    struck = [(str(e.detail["after_effect_of"]), e.t) for e in events
              if e.kind == Kind.FAULT and e.mechanism in ENDING
              and e.detail.get("after_effect_of")]
    again = all(any(x.kind == Kind.START and x.work_id == work and x.t > t for x in events)
                for work, t in struck)
    return not pending and again


def only_tasks_left(events: list[Event], result: Result | None = None) -> bool:
    """Nothing runs, and every unit still to run is a Celery task: only the broker
    could still deliver one (the checker's view; the broker is asked separately)."""
    r = result if result is not None else check(events)
    if r.counts["in_doubt"]:
        return False
    tasks = {e.work_id for e in events if e.kind == Kind.INTENT and e.mechanism == "celery"}
    return all(u.work_id in tasks for u in r.units.values()
               if u.acknowledged and u.finishes == 0)


def broker_holds_no_task(broker_url: str) -> bool:
    """No message queued (a non-empty list) or delivered and unacknowledged in the broker.
    An unreachable broker holds what it holds: not known empty."""
    import redis

    try:
        with redis.Redis.from_url(broker_url, socket_timeout=2) as broker:
            if broker.hlen(keys.KOMBU_UNACKED):
                return False
            return not any(broker.llen(k) for k in broker.scan_iter(count=1000, _type="list"))
    except redis.RedisError:
        return False


def _drain(ledger: Ledger, run_id: str, experiment: Experiment, nemesis: Nemesis,
           broker_url: str) -> None:
    """Wait, at most ``experiment.drain`` seconds, until the run has settled: by the
    ledger alone, or — for tasks that can no longer come (lost with their worker,
    evicted from the broker) — once nothing runs and the broker has held no task for
    a second (a message between the queue and the unacked hash is never missed twice)."""
    deadline = time.monotonic() + experiment.drain
    # A tick due just before the window's end may start up to late_after later.
    earliest = time.monotonic() + (experiment.late_after if experiment.schedules else 0.0)
    tail = LedgerTail(ledger, run_id)  # reads only what was appended since the last look
    empty_since: tuple[float, int] | None = None  # (when, events seen then)
    checked: tuple[int, Result] | None = None  # (events seen, their check): new ones, anew
    while time.monotonic() < deadline:
        tail.poll()
        if nemesis.done and time.monotonic() >= earliest:
            if checked is None or checked[0] != len(tail.events):
                checked = (len(tail.events), check(tail.events))
            r = checked[1]
            if settled(tail.events, experiment.redelivers, r):
                return
            if only_tasks_left(tail.events, r) and broker_holds_no_task(broker_url):
                now, seen = time.monotonic(), len(tail.events)
                if empty_since is None or empty_since[1] != seen:
                    empty_since = (now, seen)
                elif now - empty_since[0] >= 1.0:
                    return
            else:
                empty_since = None
        time.sleep(0.2)
