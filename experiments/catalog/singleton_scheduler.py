"""singleton-scheduler: the guide's "AsyncIOScheduler (single instance only)" on Kubernetes.

One API replica with its embedded scheduler, and one event of the kind Kubernetes
causes every day — a rollout (``kubectl rollout restart``), a pod delete, a force
delete — under each way of keeping "one instance" (``--controller``):

- ``deployment``: RollingUpdate at Kubernetes' defaults. maxSurge 25% rounds *up* to
  1 and maxUnavailable 25% *down* to 0, so a rollout starts the new pod, waits for it
  to be Ready, and only then deletes the old one: two schedulers at once, from the new
  one's start until the old one has stopped ("Deployments", Rolling Update Deployment).
  A pod delete is replaced at once, while the old pod terminates.
- ``deployment-surge0``: maxSurge 0, maxUnavailable 1. The old pod is deleted first,
  but the ReplicaSet creates its replacement as soon as the old one is *terminating*,
  not once it is gone (kubernetes/kubernetes#99513, "Deployment rollout creates new
  pods before old ones are terminated"): they overlap whenever the old pod takes
  longer to stop than the new one to start — a preStop sleep (``--prestop``) is enough.
- ``recreate``: every old pod is gone before a new one is created: a gap, no overlap.
- ``statefulset``: at most one pod per ordinal; the controller waits for the old pod
  to be gone before it creates the new one, under the same name: a gap. A force delete
  removes the API object at once while kubelet is still stopping the containers,
  and the controller creates the replacement at once ("Force Delete StatefulSet Pods"
  warns it can break the at-most-one guarantee). On a healthy node kubelet kills the
  old containers within seconds, so two at once only if the new one starts faster.
- ``lease``: a Deployment whose replicas run ticks only while holding a
  coordination.k8s.io Lease, and the ledger refuses a deposed holder's effect by the
  Lease's transitions (fencing): no duplicate whatever overlaps; a gap until the new
  pod holds the Lease (the old one releases it when it stops, else it expires).

The expectation follows from the mechanism: in an overlap every due tick runs twice
(duplicated ≈ overlap / interval), in a gap none runs (lost ≈ gap / interval). Which
of the two an event makes, per controller, is the claim judged; the bounds are the
probe and shutdown timings recorded in ``as_run``. The local platform refuses the run
in one line: its rolling restart surges as maxSurge 1 does, but a local instance is
ready the moment it answers, not at a readiness probe a second apart, so its overlap
is shorter than a tick (measured: 0 duplicated where the node ran 3).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from chaos.faults import FaultStep
from chaos.platform import Topology
from experiments.checker import Result, Schedule
from experiments.findings import Fix
from experiments.model import (
    BadInput,
    Cell,
    Experiment,
    ExperimentSpec,
    Param,
    Params,
    Verdict,
    Workload,
)
from experiments.summary import n
from experiments.tables import KUBERNETES
from experiments.theory import Expect, judged, struck
from services.history import Event, parse_scheduled

NAME = "singleton-scheduler"
CONTROLLERS = ("deployment", "deployment-surge0", "recreate", "statefulset", "lease")
EVENTS = ("rollout", "delete", "force-delete")
# Kubernetes' own events, each a cluster's fault: the local platform's rolling restart
# surges too, but its instance is ready the moment it answers, not at a readiness probe
# a second apart, so its overlap is shorter than a tick — not this experiment's.
FAULT_OF = {"rollout": "rollout", "delete": "pod-delete", "force-delete": "force-delete"}
# The api's readiness probe (k8s/base/api.yaml): Ready at the first success, probed
# every second; the old pod of a surge rollout goes only once the new one is Ready.
READINESS_PERIOD = 1.0
SHUTDOWN_GRACE = 1.0  # the API's own graceful shutdown (services.settings.shutdown_grace)
# From a pod's Ready (or a delete) to its old peer's SIGTERM: the Deployment controller
# and kubelet reacting, each within a second or so on an idle node.
REACTION = 2.0
# How long kubelet lets a force-deleted pod's processes live: its 2 s minimum grace
# (the lab's kubelet, 1.33: 2.4 s measured; chaos/kubernetes/platform.py's docstring).
KUBELET_FORCE_GRACE = 2.5
# A replacement slower than this to start ticking is another failure than the one
# measured here (an image pull, a crash loop): the bound on a gap.
START_BOUND = 30.0

PARAMS = (
    Param("controller", "deployment", "what keeps the one replica: a Deployment (RollingUpdate "
          "defaults, or maxSurge 0), Recreate, a StatefulSet, or a Deployment with a Lease "
          "leader and fencing", choices=CONTROLLERS),
    Param("event", "rollout", "what Kubernetes does to the pod: kubectl rollout restart, "
          "delete pod, delete pod --force --grace-period=0", choices=EVENTS),
    Param("interval", 0.5, "seconds between ticks", 0.1, 60),
    Param("duration", 20.0, "seconds of the run window", 5, 3600),
    Param("event_at", 5.0, "seconds into the run of the event", 1, 3600),
    Param("prestop", 0.0, "seconds of a preStop sleep in the api pod (the old pod runs on "
          "meanwhile)", 0, 120),
    Param("grace", 10.0, "terminationGracePeriodSeconds of the api pod", 1, 300),
    Param("lease", 3.0, "--controller lease: the Lease's duration, seconds", 1, 60),
    Param("tick_seconds", 0.05, "how long each tick's work takes", 0, 5),
)


def shape(p: Params) -> str:
    """What the event makes of one scheduler, by the controller's mechanism: two at once
    (``overlap``), none for a while (``gap``), or either (``either``)."""
    controller, event = p["controller"], p["event"]
    if controller == "lease":
        return "gap"  # two may run, but only the Lease's holder ticks
    if controller == "deployment" and event == "rollout":
        return "overlap"  # surge: the old pod is deleted only once the new one is Ready
    if event == "force-delete":
        # The replacement is created at once, while kubelet still stops the old pod:
        # SIGTERM, then SIGKILL after its short force grace (KUBELET_FORCE_GRACE). Two
        # at once only if the new one ticks within that; the docs' case, a pod that
        # outlives its force delete on a lost node, is node-loss's.
        return "either"
    if controller in ("deployment", "deployment-surge0") and p["prestop"] > 0:
        # replaced as soon as it is terminating (#99513): the old one runs on for its
        # preStop, longer than the new one needs to start
        return "overlap"
    # replaced as soon as it is terminating, but it stops (within its shutdown) before
    # the new one starts; recreate, statefulset: gone before the new pod exists
    return "gap"


# How long a replacement pod takes from its creation to its scheduler's first tick on an
# idle node: the theory's gap (measured on the local node, 1.33: 1-4 s).
TYPICAL_START = 2.0
MARK_OF = {"rollout": "restart", "delete": "pod-delete", "force-delete": "force-delete"}


def expectations(p: Params) -> tuple[Expect, Expect]:
    """The duplicated and lost ticks the mechanism gives, each with its band and why."""
    interval, kind = p["interval"], shape(p)
    longest_gap = START_BOUND + p["lease"] * (p["controller"] == "lease")
    gap_why = (f"no scheduler from the old pod's stop to the new one's first tick: a pod "
               f"start, about {TYPICAL_START:g} s here, at most {longest_gap:g} s")
    gap = Expect("lost", math.ceil(TYPICAL_START / interval), 1,
                 math.ceil(longest_gap / interval), gap_why)
    if p["controller"] == "lease":
        return (Expect.exactly("duplicated", 0),
                Expect("lost", 0, 0, gap.high, "only the Lease's holder ticks: a gap until the "
                       "new pod holds it (the old one releases it as it stops)"))
    if kind == "either":
        both = KUBELET_FORCE_GRACE + SHUTDOWN_GRACE
        return (Expect("duplicated", 0, 0, math.ceil(both / interval),
                       f"two at once only if the new pod ticks within kubelet's "
                       f"{KUBELET_FORCE_GRACE:g} s force grace"),
                Expect("lost", gap.theory, 0, gap.high, gap_why))
    if kind == "overlap":
        # the new scheduler runs from its start; the old one until its preStop and its
        # shutdown are over, after the new pod was Ready (a rollout) or at once (a delete)
        usual = READINESS_PERIOD + p["prestop"] + SHUTDOWN_GRACE
        longest = usual + REACTION
        return (Expect("duplicated", math.ceil(usual / interval) - 1, 1,
                       math.ceil(longest / interval),
                       f"two schedulers from the new one's start until the old one stops: "
                       f"Ready within {READINESS_PERIOD:g} s, then preStop "
                       f"{p['prestop']:g} s and shutdown {SHUTDOWN_GRACE:g} s, controllers "
                       f"reacting within {REACTION:g} s"),
                Expect.exactly("lost", 0))
    return Expect.exactly("duplicated", 0), gap


def bounds(p: Params) -> dict[str, tuple[int, int]]:
    """The duplicated and lost ticks the mechanism allows, (low, high) each."""
    return {e.what: (int(e.low), int(e.high)) for e in expectations(p)}


def judge(p: Params, r: Result) -> Verdict:
    head = (f"{p['controller']}, {p['event']}: "
            + ("only the Lease's holder ticks" if p["controller"] == "lease" else
               {"overlap": "an overlap", "gap": "a gap",
                "either": "an overlap or a gap"}[shape(p)]))
    if not struck(r, (MARK_OF[p["event"]],)):
        return Verdict.untested(f"{head}: the {p['event']} never happened")
    dup, lost = expectations(p)
    refused = f" ({r.refused} refused by the fence)" if r.refused else ""
    return judged(head + refused, (dup, r.counts["duplicated"]), (lost, r.counts["lost"]))


def measure(p: Params, events: Sequence[Event], r: Result) -> dict[str, Any]:
    """The overlap (duplicated ticks) and the gap (lost ticks), in seconds, and the
    ticks each pod ran: duplicated ≈ overlap / interval, lost ≈ gap / interval."""
    duplicated = sorted((parse_scheduled(u.work_id) or ("", 0.0))[1]
                        for u in r.units.values() if u.verdict == "duplicated" and u.due)
    lost = sorted((parse_scheduled(u.work_id) or ("", 0.0))[1]
                  for u in r.units.values() if u.verdict == "lost" and u.due)
    ran: dict[str, int] = {}
    for u in r.units.values():
        for name in u.instances:
            ran[name] = ran.get(name, 0) + 1
    interval = p["interval"]

    def span(times: list[float]) -> float:
        return round(times[-1] - times[0] + interval, 3) if times else 0.0

    return {"overlap_s": span(duplicated), "gap_s": span(lost), "ticks_by_pod": ran,
            "expected": {k: list(v) for k, v in bounds(p).items()}}


def _check(p: dict[str, Any]) -> None:
    if not p["event_at"] < p["duration"] - 2:
        raise BadInput("--event-at must leave at least 2 s of the run after it")
    if p["prestop"] >= p["grace"]:
        raise BadInput(f"--prestop {p['prestop']:g} must be shorter than --grace "
                       f"{p['grace']:g}: kubelet cuts the hook at the grace period")
    if p["tick_seconds"] >= p["interval"]:
        raise BadInput("--tick-seconds must be shorter than --interval")


def build(p: dict[str, Any]) -> Experiment:
    _check(p)
    controller = "deployment" if p["controller"] == "lease" else p["controller"]
    settings: dict[str, Any] = {
        "scheduler_interval": p["interval"],
        "tick_seconds": p["tick_seconds"],
        "lock_ttl": max(30.0, p["interval"] * 10),
        "api_controller": controller,
    }
    if p["prestop"]:
        settings["prestop_seconds"] = p["prestop"]
    if p["controller"] == "lease":
        settings.update(scheduler_guard="leader", fencing=True, lease_seconds=p["lease"])
    step = FaultStep(FAULT_OF[p["event"]], "api", at=p["event_at"])
    return Experiment(
        name=NAME,
        topology=Topology(replicas={"api": 1}, settings=settings, grace=p["grace"]),
        workload=Workload(duration=p["duration"]),
        faults=(step,),
        schedules=(Schedule("tick", p["interval"]),),
        drain=p["tick_seconds"] + 2.0,
    )


TABLE = KUBERNETES.key
ROW = "AsyncIOScheduler in a single instance"


def _cell(s: Any) -> str:
    params = s.get("parameters") or {}
    return (f"{params.get('controller')}: {n(s, 'duplicated')}, {n(s, 'lost')}")


CELLS = (
    Cell(TABLE, ROW, "rollout", {"event": "rollout"}, _cell),
    Cell(TABLE, ROW, "pod delete", {"event": "delete"}, _cell),
    Cell(TABLE, ROW, "pod delete", {"event": "force-delete"},
         lambda s: "force delete, " + _cell(s)),
)

SPEC = ExperimentSpec(
    name=NAME,
    summary="one API replica's scheduler across a rollout, a pod delete or a force delete, "
            "per controller: overlaps run ticks twice, gaps lose them",
    params=PARAMS,
    build=build,
    judge=judge,
    measure=measure,
    cells=CELLS,
    quick={"duration": 15.0},
    variants=(*({"controller": c, "event": e}
                for c, e in (("deployment", "rollout"), ("deployment", "delete"),
                             ("deployment-surge0", "rollout"), ("recreate", "rollout"),
                             ("statefulset", "rollout"), ("statefulset", "force-delete"),
                             ("lease", "rollout"))),
              # kubernetes/kubernetes#99513: maxSurge 0 overlaps when the old pod outlives
              # the start of the new one, as with a preStop sleep
              {"controller": "deployment-surge0", "event": "rollout", "prestop": 5.0}),
)

FIXES = (
    Fix("a Lease leader with fencing: only the holder ticks", {"controller": "lease"},
        when={"controller": lambda v: v != "lease"}),
)
