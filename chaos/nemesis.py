"""The nemesis: applies fault steps to a platform on schedule, and records each in the ledger.

It runs in a thread beside the workload and routes each step to its handler in
``chaos.faults.FAULTS``; it is the ``Strike`` those handlers act through. For a
``mid_job`` step it tails the ledger until an instance of the target component
starts work, then strikes that instance, and records whether work was in flight
on it at that moment. Random
choices (which replica a timed fault hits) come from the run's seeded RNG.
"""

from __future__ import annotations

import random
import threading
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from chaos.faults import FAULTS, FaultStep
from chaos.platform import Instance, Platform, PlatformError
from chaos.wait import poll_until
from services.history import Event, Kind


class EventLog(Protocol):
    """What the nemesis and the drain need of the ledger (``services.ledger.Ledger``,
    or ``chaos.stub.MemoryLedger`` in unit tests)."""

    def record(self, kind: Kind | str, work_id: str, mechanism: str, instance: str, *,
               detail: dict[str, Any] | None = None) -> str | None:
        """Append one event to the current run."""

    def history(self, run: str, start: int = 0) -> Iterable[Event]:
        """The run's events in commit order, from index ``start``."""


BETWEEN_SETTLE = 0.1  # seconds an instance must stay idle after a finish ("between")


class LedgerTail:
    """Reads a run's events as they are appended, and keeps who is running what."""

    def __init__(self, ledger: EventLog, run: str) -> None:
        self.ledger, self.run = ledger, run
        self.index = 0
        self.open: dict[str, set[str]] = defaultdict(set)  # instance -> open exec_ids
        self.events: list[Event] = []

    def poll(self) -> list[Event]:
        new = list(self.ledger.history(self.run, start=self.index))
        self.index += len(new)
        for e in new:
            if e.kind == Kind.START:
                self.open[e.instance].add(e.exec_id)
            elif e.kind in (Kind.FINISH, Kind.REFUSED):
                self.open[e.instance].discard(e.exec_id)
        self.events.extend(new)
        return new


@dataclass
class FaultRecord:
    """What the nemesis did, for the summary."""

    step: str
    action: str
    target: str
    at: float  # seconds after the run started, harness clock
    inflight: int | None  # executions open on the target when it was hit
    mid_job: bool = False  # triggered by the target's own ledger event
    detail: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"step": self.step, "action": self.action, "target": self.target,
                "at": round(self.at, 3), "inflight": self.inflight, "mid_job": self.mid_job,
                **self.detail}


class Nemesis:
    """Runs the steps in order in its own thread; ``stop`` ends it early."""

    def __init__(self, platform: Platform, ledger: EventLog, run: str, steps: list[FaultStep],
                 rng: random.Random, started: float, mid_job_timeout: float = 30.0) -> None:
        self.platform, self.ledger, self.run = platform, ledger, run
        self.steps = sorted(steps, key=lambda s: s.at)
        self.rng = rng
        self.started = started  # time.monotonic() at the start of the run
        self.mid_job_timeout = mid_job_timeout
        self.records: list[FaultRecord] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="nemesis", daemon=True)
        self._tail = LedgerTail(ledger, run)
        self._serial = 0
        self._after_effect_of = ""  # the unit whose finish triggered the step being applied

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        self._thread.join(timeout=timeout)

    @property
    def done(self) -> bool:
        return not self._thread.is_alive()

    def _elapsed(self) -> float:
        return time.monotonic() - self.started

    def _run(self) -> None:
        for i, step in enumerate(self.steps):
            if self._stop.wait(max(0.0, step.at - self._elapsed())):
                # A step never applied is a fault that did not happen: say so.
                self.errors += [f"{s.describe()}: not applied, the run ended first"
                                for s in self.steps[i:]]
                return
            try:
                self._apply(step)
            except PlatformError as exc:
                self.errors.append(f"{step.describe()}: {exc}")

    def _await_event(self, step: FaultStep) -> Instance | None:
        """The first instance of the component with a ``step.on`` event after now
        (``between``: a ``finish`` after which, as far as the ledger has seen, the
        instance runs nothing — its next job has not started)."""
        self._tail.poll()  # skip what happened before the step was due
        kind = Kind.FINISH if step.on == "between" else step.on

        def struck() -> Instance | None:
            if self._stop.is_set():
                return None
            # poll() has already applied the whole batch to ``open``: a job started
            # right after the finish disqualifies it.
            for e in self._tail.poll():
                if e.kind != kind or (step.mechanism and e.mechanism != step.mechanism):
                    continue
                if step.on == "between" and not self._idle_after(e.instance):
                    continue
                name = str(e.detail.get("via", e.instance))
                for inst in self.platform.instances(step.component):
                    if inst.name == name:
                        if step.on == "finish":
                            self._after_effect_of = e.work_id
                        return inst
            return None

        return poll_until(struck, self.mid_job_timeout, interval=0.01,
                          give_up=self._stop.is_set)

    def _idle_after(self, instance: str) -> bool:
        """The instance runs nothing now, nor a moment later: the moment lets it end the
        job it just finished in its own bookkeeping too (a scheduler still counts a job
        as running until its task is done), and a next job that started meanwhile is
        seen in the ledger."""
        if self._tail.open[instance] or self._stop.wait(BETWEEN_SETTLE):
            return False
        self._tail.poll()
        return not self._tail.open[instance]

    # --- what a fault's handler may use (chaos.faults.Strike) -----------------------------
    def pick(self, step: FaultStep) -> Instance:
        if step.on:
            target = self._await_event(step)
        else:
            instances = sorted(self.platform.instances(step.component), key=lambda i: i.name)
            target = self.rng.choice(instances) if instances else None
        if target is None:
            raise PlatformError(f"no {step.component} instance to {step.action}"
                                + (f" had a {step.on} event in time" if step.on else ""))
        return target

    def inflight(self, instance: str) -> int:
        self._tail.poll()
        return len(self._tail.open[instance])

    def record(self, step: FaultStep, action: str, target: str, inflight: int | None,
               **detail: Any) -> None:
        self._serial += 1
        at = self._elapsed()
        if self._after_effect_of:  # struck after that unit's effect, before its ack
            detail = {"after_effect_of": self._after_effect_of, **detail}
            self._after_effect_of = ""
        mid_job = step.mid_job and inflight is not None
        self.ledger.record(Kind.FAULT, f"fault-{self._serial}", action, target,
                           detail={"inflight": inflight, "at": round(at, 3),
                                   **({"mid_job": True} if mid_job else {}), **detail})
        self.records.append(FaultRecord(step.describe(), action, target, at, inflight,
                                        mid_job, detail))

    def wait(self, seconds: float) -> bool:
        return self._stop.wait(seconds)

    def gone(self, component: str, before: set[str], timeout: float) -> list[str]:
        def left() -> list[str]:
            now = {i.name for i in self.platform.instances(component)}
            return sorted(before - now)

        return poll_until(left, timeout, interval=0.05, give_up=self._stop.is_set) or []

    def _apply(self, step: FaultStep) -> None:
        FAULTS[step.action].handler(self, step)
