"""The probe as an experiment: the user's app on the local platform, under faults.

Its parameters are what ``scalelab probe`` takes (the workload file's content and the
app's environment kept as JSON, the faults as a list), so a stored probe run is
re-checked and reported like any other. Its verdict is the user's question: did any
unit of work get lost or run twice? The counts per mechanism and per job, task or
function (``measured.by_what``) say which of the app's work it was.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from chaos.faults import FAULTS, Fault, FaultStep
from chaos.platform import Topology
from experiments.checker import Result
from experiments.model import BadInput, Experiment, ExperimentSpec, Param, Params, Verdict, Workload
from experiments.probe import due, requests
from services.history import Event, parse_scheduled
from services.probe.background import READY_PATH

NAME = "probe"
MODULES = {"api": "services.probe.api", "worker": "services.probe.worker",
           "beat": "services.probe.beat"}
COMPONENTS = ("api", "worker", "beat")


def _strikable() -> dict[str, Fault]:
    """The fault table's faults a probe can strike: any but those a lab must be started
    for (a proxy in front of every instance, a movable clock)."""
    return {name: f for name, f in FAULTS.items() if not f.setting}


PARAMS = (
    Param("asgi", "", "the ASGI app, module:attribute (e.g. shop.main:app)"),
    Param("celery", "", "the Celery app, module:attribute (e.g. shop.worker:app)"),
    Param("app_dir", ".", "the directory the import paths are relative to"),
    Param("workload", "", "the workload (JSON: requests with method, path, body, rate)"),
    Param("env", "", "the app's extra environment (JSON object; {broker}: the lab's broker)"),
    Param("replicas", 3, "API replicas (each runs whatever scheduler the app starts)", 0, 16),
    Param("workers", 1, "Celery worker instances", 0, 16),
    Param("concurrency", 2, "pool processes per Celery worker", 1, 16),
    Param("beat", 0, "Celery beat replicas", 0, 4),
    Param("faults", "", "comma-separated FAULT[:COMPONENT], from the fault table"),
    Param("duration", 30.0, "seconds the workload and the schedules run", 2, 3600),
    Param("drain", 15.0, "seconds, at most, for accepted work to finish after the run", 0, 600),
    Param("grace", 5.0, "terminate and rolling restart: seconds from SIGTERM to SIGKILL",
          0, 600),
)


def parse_faults(raw: str, p: Params) -> tuple[FaultStep, ...]:
    """``kill,rolling-restart:api`` -> fault steps spread evenly over the run; a fault that
    can strike mid-job does, the moment a unit of work starts on its component."""
    names = [f.strip() for f in raw.split(",") if f.strip()]
    known = _strikable()
    steps = []
    for i, given in enumerate(names):
        action, _, component = given.partition(":")
        fault = known.get(action)
        if fault is None:
            raise BadInput(f"--fault {given!r}: unknown fault (known: {', '.join(known)})")
        component = component or _default_target(fault, p)
        if component not in COMPONENTS or not _count(component, p):
            raise BadInput(f"--fault {given!r}: this probe runs no {component} instance")
        step = fault.step(component, at=p["duration"] * (i + 1) / (len(names) + 1),
                          numbers={"grace": p["grace"]})
        steps.append(replace(step, on="start") if fault.mid_job else step)
    return tuple(steps)


def _count(component: str, p: Params) -> int:
    return int(p["replicas"]) if component == "api" else int(p[component + "s"]) \
        if component == "worker" else int(p["beat"])


def _default_target(fault: Fault, p: Params) -> str:
    """Where the work is: a worker for a mid-job fault when Celery runs, else an API replica."""
    if fault.mid_job and p["celery"] and p["workers"]:
        return "worker"
    return "api" if p["asgi"] and p["replicas"] else "worker"


def build(p: dict[str, Any]) -> Experiment:
    if not p["asgi"] and not p["celery"]:
        raise BadInput("give the app to probe: --asgi module:app and/or --celery module:app")
    if p["replicas"] and not p["asgi"]:
        p = {**p, "replicas": 0}
    if not p["celery"]:
        p = {**p, "workers": 0, "beat": 0}
    try:
        env = json.loads(p["env"]) if p["env"] else {}
    except json.JSONDecodeError:
        env = None
    if not isinstance(env, dict):
        raise BadInput("--env must be NAME=VALUE pairs (kept as a JSON object)")
    app_dir = str(Path(p["app_dir"]).resolve())
    loads, publish = requests.loads(p["workload"]), requests.publishes(p["workload"])
    if loads and not p["replicas"]:
        raise BadInput("a workload of requests needs API replicas (--asgi, --replicas >= 1)")
    if publish and not p["workers"]:
        raise BadInput("a workload of tasks needs Celery workers (--celery, --workers >= 1)")
    topology = Topology(
        replicas={"api": p["replicas"], "worker": p["workers"], "beat": p["beat"]},
        settings={"probe": 1, "probe_asgi": p["asgi"], "probe_celery": p["celery"],
                  "probe_app_dir": app_dir, "probe_env": json.dumps(env),
                  "worker_concurrency": p["concurrency"]},
        grace=p["grace"], modules=MODULES, ready_path=READY_PATH)
    return Experiment(
        name=NAME, topology=topology,
        workload=Workload(duration=p["duration"], requests=loads, publish=publish),
        faults=parse_faults(p["faults"], p),
        drain=p["drain"],
        redelivers=True,  # accepted work may still come back (acks late): wait for it
        late_after=1.0,
        announced=due.schedules)


def judge(p: Params, r: Result) -> Verdict:
    lost, dup, doubt = r.counts["lost"], r.counts["duplicated"], r.counts["in_doubt"]
    sentence = (f"nothing lost or run twice? {dup} duplicated ({r.extra_executions} extra "
                f"executions), {lost} lost, {doubt} in doubt of {r.expected} units of work")
    return Verdict.of(lost == 0 and dup == 0, sentence)


def what(e: Event) -> str:
    """What a unit is, in the app's words: its mechanism and its job, task or function."""
    if e.mechanism == "apscheduler":
        parsed = parse_scheduled(e.work_id)
        return f"apscheduler {parsed[0] if parsed else e.work_id}"
    if e.mechanism == "celery":
        return f"celery {e.detail.get('task') or '?'}"
    if e.mechanism == "backgroundtasks":
        return f"backgroundtasks {e.work_id.rsplit('/', 1)[-1].split('#')[0]}"
    if e.mechanism == "unit":
        return f"unit {e.work_id.split(':', 1)[0]}"
    return e.mechanism


def measure(p: Params, events: Sequence[Event], r: Result) -> dict[str, Any]:
    """Verdicts per job, task and function of the app: which of its work was lost or doubled."""
    names: dict[str, str] = {}
    for e in events:
        if e.kind != "fault" and (e.work_id not in names or e.detail.get("task")):
            names[e.work_id] = what(e)
    by_what: dict[str, dict[str, int]] = {}
    for unit in r.units.values():
        scheduled = parse_scheduled(unit.work_id)  # a due run that never began has no event
        name = names.get(unit.work_id) or (f"apscheduler {scheduled[0]}" if scheduled else "?")
        counts = by_what.setdefault(name, {})
        counts[unit.verdict] = counts.get(unit.verdict, 0) + 1
    return {"by_what": {k: by_what[k] for k in sorted(by_what)}}


SPEC = ExperimentSpec(
    name=NAME,
    summary="your own app under the lab's faults: what it loses or runs twice",
    params=PARAMS,
    build=build,
    judge=judge,
    measure=measure,
)
