"""disconnect-cancel: BackgroundTasks behind an HTTP middleware, the client gone early.

starlette #1438 and fastapi #5606: with a ``BaseHTTPMiddleware`` in front of the
routes, a client that disconnected once the response arrived could cancel the
response's BackgroundTasks — accepted work (a 202) that never ran to its end. The
harness's client closes its connection as soon as it has the response, while the
background work still runs; ``--middleware base-http`` puts a pass-through
``BaseHTTPMiddleware`` in front of the routes, ``none`` leaves it out. The summary
records the versions of starlette, FastAPI and uvicorn the replicas ran.

Measured with the versions installed here (starlette 1.10, FastAPI 0.165, uvicorn
0.54): the accepted work runs to its end with or without the middleware; that is the
expectation, so a version that cancels it again makes this experiment fail.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from importlib import metadata
from typing import Any

from chaos.platform import Topology
from experiments.checker import Result
from experiments.findings import Fix
from experiments.model import (
    Cell,
    Experiment,
    ExperimentSpec,
    Param,
    Params,
    RequestLoad,
    Verdict,
    Workload,
)
from experiments.summary import Summary, n
from services.history import Event

NAME = "disconnect-cancel"
VERSIONS = ("starlette", "fastapi", "uvicorn")

PARAMS = (
    Param("middleware", "base-http", "an HTTP middleware in front of the routes",
          choices=("none", "base-http")),
    Param("work_seconds", 1.0, "how long each request's background work runs", 0.1, 30),
    Param("rate", 4.0, "requests per second", 0.5, 100),
    Param("duration", 3.0, "seconds of requests", 1, 600),
)


def versions() -> dict[str, str]:
    """The versions the replicas run (they share the harness's environment locally)."""
    found = {}
    for dist in VERSIONS:
        with contextlib.suppress(metadata.PackageNotFoundError):
            found[dist] = metadata.version(dist)
    return found


def cut_short(result: Result) -> int:
    """Accepted units whose work started and never finished (cancelled, or killed)."""
    return sum(1 for u in result.units.values()
               if u.acknowledged and u.starts and not u.finishes)


def measure(p: Params, events: Sequence[Event], result: Result) -> dict[str, Any]:
    return {"versions": versions(), "accepted": result.expected,
            "finished": sum(1 for u in result.units.values() if u.finishes),
            "cut_short": cut_short(result)}


def judge(p: Params, r: Result) -> Verdict:
    c = r.counts
    said = ", ".join(f"{k} {v}" for k, v in versions().items())
    text = (f"{'BaseHTTPMiddleware' if p['middleware'] == 'base-http' else 'no middleware'}, "
            f"client gone after the 202 ({said}): {c['ok']}/{r.expected} ran to the end, "
            f"{cut_short(r)} cut short, {c['lost']} lost")
    return Verdict.of(c["ok"] == r.expected and r.expected > 0,
                      text + " (want all accepted work done)")


def _says(s: Summary) -> str:
    p, m = s["parameters"], s.get("measured") or {}
    said = ", ".join(f"{k} {v}" for k, v in (m.get("versions") or {}).items())
    where = "behind BaseHTTPMiddleware" if p["middleware"] == "base-http" else "no middleware"
    return f"{where}, client gone early ({said}): {m.get('cut_short')} cut short, {n(s, 'ok')}"


CELLS = (Cell("left-out", "Client disconnect", "BackgroundTasks", {}, _says),)


def build(p: dict[str, Any]) -> Experiment:
    return Experiment(
        name=NAME,
        topology=Topology(replicas={"api": 1},
                          settings={"api_middleware": p["middleware"],
                                    "scheduler_enabled": False}),
        # The harness's client closes each connection once it has the response.
        workload=Workload(duration=p["duration"],
                          requests=(RequestLoad("/work/background", p["rate"],
                                                p["work_seconds"]),)),
        drain=p["work_seconds"] + 4.0,
    )


SPEC = ExperimentSpec(
    name=NAME,
    summary="BackgroundTasks behind BaseHTTPMiddleware when the client disconnects early: "
            "does the accepted work still run",
    params=PARAMS,
    build=build,
    judge=judge,
    measure=measure,
    cells=CELLS,
    variants=({"middleware": "base-http"}, {"middleware": "none"}),
    quick_variants=({"middleware": "base-http"},),
)

# What removes this experiment's failure (said beside a run that lost or duplicated work).
FIXES = (Fix("no BaseHTTPMiddleware in front of BackgroundTasks", {"middleware": "none"},
             when={"middleware": "base-http"}),)
