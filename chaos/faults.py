"""Faults, as data and as one table: what each does, how it is recorded and drawn.

A ``FaultStep`` names an action, the component it targets and when it fires: ``at``
seconds after the run starts, or — ``on="start"``, *mid-job* — at the first
``start`` event in the ledger after ``at`` from an instance of that component (of
``mechanism``, if given), so a kill provably lands while work runs. ``on="finish"``
strikes right after an effect, before the work is acknowledged; ``on="between"``
right after a ``finish`` of an instance that then has no work open (its next job
has not started), so the fault provably lands between jobs.

``FAULTS`` is the fault table, as Jepsen's ``nemesis/combined`` packages a fault: one
``Fault`` per kind declares what it does (its handler, through the ``Platform``
protocol), what users call it, its options and their bounds, whether it lasts and
whether it can strike mid-job, the platform capability it needs, and the marks it
leaves in the ledger. The experiments' fault options, the fixes matrix's columns,
the refusal of a fault a platform lacks, the checker's *interrupted* and the plots'
colours all read this table; no fault is named anywhere else. A *mark* is a fault
event as the ledger records it (``kill``, ``pause``, ``resume``, ...): whether it
ends the work running on its target and its colour in plots. This module is pure
data and functions of the ``Platform`` protocol.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol, TypeVar, cast

from chaos.cluster_faults import ClusterFaults, cluster, drain, scale_in_by_cost, watch_restarts
from chaos.platform import Instance, Platform, PlatformError
from chaos.skew import MAX_SKEW


@dataclass(frozen=True)
class FaultStep:
    """One fault. ``duration``: how long a pause or broker outage lasts."""

    action: str  # a fault's name, a key of FAULTS
    component: str = "api"
    at: float = 0.0
    on: Literal["", "start", "finish", "between"] = ""  # ledger trigger ("" = timed)
    mechanism: str = ""  # only events of this mechanism trigger the step
    replicas: int = 0  # scale: the new replica count
    duration: float = 0.0
    grace: float | None = None  # terminate: override the topology's grace period
    offset: float = 0.0  # skew: seconds the target's wall clock is set off the real time
    delay: float = 0.0  # seconds between picking the target (its event) and the strike

    def __post_init__(self) -> None:
        if self.action not in FAULTS:
            raise ValueError(f"unknown fault {self.action!r} (known: {', '.join(FAULTS)})")

    @property
    def mid_job(self) -> bool:
        """Triggered by a ``start`` of its target: work is provably running there."""
        return self.on == "start"

    def describe(self) -> str:
        when = f"at {self.at:g}s" + {"start": " mid-job", "finish": " after an effect",
                                     "between": " between jobs"}.get(self.on, "")
        return f"{FAULTS[self.action].describe(self)} {when}"


class Strike(Protocol):
    """What a fault's handler may use: the platform, the nemesis's choice of target,
    what is running where, the ledger record, and an interruptible wait."""

    platform: Platform

    def pick(self, step: FaultStep) -> Instance:
        """The step's target: the instance of a mid-job event, else a seeded random one."""

    def inflight(self, instance: str) -> int:
        """Executions open on the instance right now, from the ledger."""

    def record(self, step: FaultStep, action: str, target: str, inflight: int | None,
               **detail: Any) -> None:
        """Write the mark ``action`` on ``target`` to the ledger and the run's summary."""

    def wait(self, seconds: float) -> bool:
        """Sleep; True if the run is being stopped meanwhile."""

    def gone(self, component: str, before: set[str], timeout: float) -> list[str]:
        """Instances of ``before`` that stopped being ready within ``timeout``."""


@dataclass(frozen=True)
class Mark:
    """A fault event as the ledger records it."""

    ends_work: bool  # nothing running on the target can finish after it
    colour: str  # in plots and the results browser
    span_to: str = ""  # the mark that closes the span this one opens ("resume")


Handler = Callable[[Strike, FaultStep], None]
P = TypeVar("P")


def able(platform: Platform, protocol: Callable[..., P]) -> P:
    """``platform`` as ``protocol``: the methods of a capability only some platforms have
    (a ``runtime_checkable`` Protocol); PlatformError where it is not one."""
    if not isinstance(platform, protocol):  # type: ignore[arg-type]
        raise PlatformError(f"the {platform.name} platform has no {protocol.__name__}")
    return cast(P, platform)


@dataclass(frozen=True)
class FaultOption:
    """A number a fault takes (the ``FaultStep`` field it sets), with its bounds."""

    field: str  # "duration", "offset", "replicas", "grace"
    default: float
    minimum: float
    maximum: float
    help: str


LASTS = FaultOption("duration", 2.0, 0.1, 600, "seconds it lasts")
OFFSET = FaultOption("offset", 2.0, -MAX_SKEW, MAX_SKEW,
                     "seconds the target's wall clock is set off the real time")

Target = Literal["instance", "component", "lab"]


@dataclass(frozen=True)
class Fault:
    """One kind of fault, declared once: everything else in the lab derives from this.

    ``name`` is what users type (``--fault clock-skew``); ``handler`` does it through the
    platform; ``marks`` are the events it leaves in the ledger (whether each ends the
    work on its target, for the checker, and its colour, for plots). ``needs`` is the
    platform capability it takes: a platform that does not declare it is refused the
    fault before a run starts. ``lasts``: it takes a duration; ``mid_job``: it can
    strike the instance whose work just started; ``target``: an instance, a whole
    component, or the lab (a broker). ``setting``: the topology setting a lab must be
    started with for it (every instance behind a proxy, or with a movable clock).
    ``column`` (and its ``short`` heading) puts it in the fixes matrix and among the
    faults a scheduler experiment takes; ``settle``: seconds such a run needs at
    least, for the fault's effect to show. ``flag`` makes it a fault every experiment
    takes from its command line (``--partition TARGET``, ``--skew TARGET=SECONDS``).
    """

    name: str
    handler: Handler
    describe: Callable[[FaultStep], str]
    marks: Mapping[str, Mark]
    help: str
    needs: str = ""  # the platform capability (default: the fault's name)
    lasts: bool = False
    mid_job: bool = False
    target: Target = "instance"
    options: tuple[FaultOption, ...] = ()  # besides the duration of a lasting fault
    setting: str = ""
    column: str = ""
    short: str = ""
    settle: float = 0.0
    flag: str = ""
    # The protocol of the methods it calls beyond ``Platform``'s, where only the
    # platforms with its capability have them (its handler reaches them with ``able``).
    protocol: type | None = None

    @property
    def capability(self) -> str:
        return self.needs or self.name

    @property
    def numbers(self) -> tuple[FaultOption, ...]:
        """Every number it takes: its duration if it lasts, then its options."""
        return ((LASTS,) if self.lasts else ()) + self.options

    def step(self, component: str, *, at: float, mid_job: str = "",
             numbers: Mapping[str, float] | None = None) -> FaultStep:
        """A step of this fault on ``component`` at ``at`` s; ``mid_job``: a mechanism
        whose start on the target triggers it (where the fault can strike mid-job).
        ``numbers``: values for its options by field (others are ignored)."""
        given = numbers or {}
        fields: dict[str, Any] = {o.field: type(o.default)(given.get(o.field, o.default))
                                  for o in self.numbers}
        if mid_job and self.mid_job:
            fields.update(on="start", mechanism=mid_job)
        return FaultStep(self.name, component, at=at, **fields)


def _strike(act: Callable[[Platform, Instance, FaultStep], None], mark: str) -> Handler:
    """A fault on one instance: pick it, count its work in flight, act, record."""

    def handler(s: Strike, step: FaultStep) -> None:
        target = s.pick(step)
        if step.delay and s.wait(step.delay):
            raise PlatformError(f"the run ended {step.delay:g} s after {target.name}'s "
                                "event, before the fault")
        inflight = s.inflight(target.name)
        act(s.platform, target, step)
        s.record(step, mark, target.name, inflight)

    return handler


def _pause(s: Strike, step: FaultStep) -> None:
    target = s.pick(step)
    inflight = s.inflight(target.name)
    s.platform.pause(target)
    s.record(step, "pause", target.name, inflight)
    s.wait(step.duration)  # stopped early or not, the target is resumed and it is recorded
    s.platform.resume(target)
    s.record(step, "resume", target.name, None)


def _scale(s: Strike, step: FaultStep) -> None:
    before = {i.name for i in s.platform.instances(step.component)}
    open_work = {name: s.inflight(name) for name in before}
    s.platform.scale(step.component, step.replicas)
    if step.replicas >= len(before):
        s.record(step, "scale-up", step.component, None, replicas=step.replicas)
        return
    # The platform chooses which instances go; each is marked, so the checker knows
    # whatever they were running was cut short by the scale-down.
    for name in s.gone(step.component, before, timeout=30.0):
        s.record(step, "scale-down", name, open_work.get(name), replicas=step.replicas)


def _rolling_restart(s: Strike, step: FaultStep) -> None:
    for inst in s.platform.instances(step.component):
        s.record(step, "restart", inst.name, s.inflight(inst.name))
    s.platform.rolling_restart(step.component)


def _target(s: Strike, step: FaultStep) -> Instance:
    """The step's target: the instance its ``component`` names (``api-2``), else ``pick``."""
    kind, sep, serial = step.component.rpartition("-")
    if sep and serial.isdigit():
        instances = s.platform.instances(kind)
        for instance in instances:
            if instance.name == step.component:
                return instance
        # Pods are named by their ReplicaSet (api-7d9f8-x2b4q), not by serial: there
        # api-2 is the second instance, oldest first.
        serials = [i for i in instances
                   if i.name.rpartition("-")[0] == kind and i.name.rpartition("-")[2].isdigit()]
        if not serials and 1 <= int(serial) <= len(instances):
            return instances[int(serial) - 1]
        raise PlatformError(f"no instance {step.component} to {step.action}")
    return s.pick(step)


def _partition(s: Strike, step: FaultStep) -> None:
    target = _target(s, step)
    inflight = s.inflight(target.name)
    s.platform.partition(target)
    s.record(step, "partition", target.name, inflight)
    s.wait(step.duration)  # stopped early or not, the partition is healed and recorded
    s.platform.heal(target)
    s.record(step, "heal", target.name, None)


def _skew(s: Strike, step: FaultStep) -> None:
    target = _target(s, step)
    s.platform.skew(target, step.offset)
    s.record(step, "skew", target.name, None, seconds=step.offset)


def _kill_child(platform: Platform, instance: Instance) -> None:
    platform.kill_child(instance)


def _outage(what: str, act: Callable[[Platform, float], None]) -> Handler:
    """A fault on a whole part of the lab (``broker``, ``datastore``): marked when it goes
    down and when it is back."""

    def handler(s: Strike, step: FaultStep) -> None:
        s.record(step, f"{what}-outage", what, None, seconds=step.duration)
        act(s.platform, step.duration)
        s.record(step, f"{what}-back", what, None)

    return handler


_TABLE: tuple[Fault, ...] = (
    Fault("kill", _strike(lambda p, i, step: p.kill(i), "kill"),
          lambda step: f"kill {step.component}",
          {"kill": Mark(ends_work=True, colour="#B2182B")},
          "SIGKILL the whole instance; the platform replaces it under a new name",
          mid_job=True, column="kill mid-job", short="kill",
          settle=15.0),  # a replacement starts and runs work
    Fault("terminate", _strike(lambda p, i, step: p.terminate(i, step.grace), "terminate"),
          lambda step: f"terminate {step.component}",
          {"terminate": Mark(ends_work=True, colour="#D6604D")},
          "SIGTERM, then SIGKILL when the grace period runs out", mid_job=True),
    Fault("restart-in-place",
          _strike(lambda p, i, step: p.restart_in_place(i), "restart-in-place"),
          lambda step: f"restart one {step.component} in place",
          {"restart-in-place": Mark(ends_work=True, colour="#F4A582")},
          # a container restart in its pod: APScheduler 4's scheduler identity, the
          # instance name, is then stable
          "SIGKILL the instance and start it again under the same name",
          mid_job=True, column="kill mid-job, restarted in place", short="in-place",
          settle=15.0),
    Fault("pause", _pause,
          lambda step: f"pause {step.component} for {step.duration:g}s",
          {"pause": Mark(ends_work=False, colour="#E6AB02", span_to="resume"),
           "resume": Mark(ends_work=False, colour="#E6AB02")},
          "SIGSTOP every process of the instance, SIGCONT after the duration",
          lasts=True, mid_job=True, column="pause past the lease", short="pause"),
    Fault("scale", _scale,
          lambda step: f"scale {step.component} to {step.replicas}",
          {"scale-up": Mark(ends_work=False, colour="#1B7837"),
           "scale-down": Mark(ends_work=True, colour="#762A83")},
          "set the component's replica count", target="component",
          options=(FaultOption("replicas", 1, 0, 32, "the new replica count"),)),
    Fault("rolling-restart", _rolling_restart,
          lambda step: f"rolling restart of {step.component}",
          # Recorded when the restart begins; the instance ends later (see the checker).
          {"restart": Mark(ends_work=True, colour="#D6604D")},
          "replace every instance of the component, one at a time, gracefully",
          target="component", column="rolling restart", short="restart",
          # surge one, wait for it, retire one, three times over
          settle=30.0),
    Fault("broker-outage", _outage("broker", lambda p, seconds: p.broker_outage(seconds)),
          lambda step: f"broker outage for {step.duration:g}s",
          {"broker-outage": Mark(ends_work=False, colour="#555555", span_to="broker-back"),
           "broker-back": Mark(ends_work=False, colour="#555555")},
          "kill the broker Redis, bring it back empty after the duration",
          lasts=True, target="lab", column="broker outage", short="broker"),
    Fault("datastore-outage",
          _outage("datastore", lambda p, seconds: p.datastore_outage(seconds)),
          lambda step: f"data-store (PostgreSQL) outage for {step.duration:g}s",
          {"datastore-outage": Mark(ends_work=False, colour="#7F3B08",
                                    span_to="datastore-back"),
           "datastore-back": Mark(ends_work=False, colour="#7F3B08")},
          "kill the data store (PostgreSQL), bring it back, data intact, after the duration",
          lasts=True, target="lab", column="data-store outage", short="datastore"),
    Fault("partition", _partition,
          lambda step: f"partition {step.component} from the broker for {step.duration:g}s",
          {"partition": Mark(ends_work=False, colour="#2166AC", span_to="heal"),
           "heal": Mark(ends_work=False, colour="#2166AC")},
          "cut this instance (e.g. api-2) or component off the broker",
          lasts=True, mid_job=True, setting="partitionable",
          column="partition from the broker", short="partition", flag="partition"),
    Fault("clock-skew", _skew,
          lambda step: f"skew the clock of {step.component} by {step.offset:+g}s",
          {"skew": Mark(ends_work=False, colour="#8C510A")},
          "that instance's wall clock runs off by SECONDS",
          mid_job=True, options=(OFFSET,), setting="skewable",
          column="clock skew", short="skew", flag="skew"),
    Fault("kill-child", _strike(lambda p, i, step: _kill_child(p, i), "kill-child"),
          lambda step: f"SIGKILL one pool process of {step.component}",
          # The pool process's task dies with it; the instance (and its other work) lives.
          {"kill-child": Mark(ends_work=True, colour="#F46D43")},
          "SIGKILL one pool process of a worker (not the worker)", mid_job=True),
    # What Kubernetes itself does to pods (chaos.cluster_faults): only a cluster has them.
    Fault("rollout", _rolling_restart,
          lambda step: f"rollout restart of {step.component} under its controller",
          {"restart": Mark(ends_work=True, colour="#D6604D")},
          "kubectl rollout restart: the controller's own strategy (Recreate, maxSurge 0, a "
          "StatefulSet) replaces every pod", target="component"),
    Fault("pod-delete", _strike(lambda p, i, step: p.terminate(i, step.grace), "pod-delete"),
          lambda step: f"delete a {step.component} pod",
          {"pod-delete": Mark(ends_work=True, colour="#D6604D")},
          "kubectl delete pod: its grace period; its controller replaces it", mid_job=True),
    Fault("force-delete",
          _strike(lambda p, i, step: cluster(p, "force-delete").force_delete(i),
                  "force-delete"),
          lambda step: f"force delete a {step.component} pod",
          {"force-delete": Mark(ends_work=True, colour="#B2182B")},
          "kubectl delete pod --force --grace-period=0: the API object goes at once",
          mid_job=True, protocol=ClusterFaults),
    Fault("drain", drain, lambda step: f"drain: evict every {step.component} pod",
          {"evict": Mark(ends_work=True, colour="#9E0142")},
          "evict every pod of the component through the Eviction API, as kubectl drain",
          target="component", protocol=ClusterFaults),
    Fault("scale-in-by-cost", scale_in_by_cost,
          lambda step: f"scale {step.component} to {step.replicas}, busy pods costlier",
          {"scale-up": Mark(ends_work=False, colour="#1B7837"),
           "scale-down": Mark(ends_work=True, colour="#762A83")},
          "set each pod's pod-deletion-cost to its running work, then scale down",
          target="component", protocol=ClusterFaults,
          options=(FaultOption("replicas", 1, 0, 32, "the new replica count"),)),
    Fault("watch-restarts", watch_restarts,
          lambda step: f"watch {step.component}'s containers for kubelet restarts",
          {"container-restart": Mark(ends_work=True, colour="#5E3C99")},
          "mark every container kubelet restarts (liveness, OOM) while it lasts",
          lasts=True, target="component", protocol=ClusterFaults),
)
FAULTS: dict[str, Fault] = {fault.name: fault for fault in _TABLE}
# The faults of the fixes matrix's columns, in its order.
COLUMNS: tuple[Fault, ...] = tuple(f for f in _TABLE if f.column)

MARKS: dict[str, Mark] = {name: mark for fault in FAULTS.values()
                          for name, mark in fault.marks.items()}
# Marks after which nothing running on the target instance can finish.
ENDING: frozenset[str] = frozenset(name for name, mark in MARKS.items() if mark.ends_work)
