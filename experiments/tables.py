"""The report's tables: their rows, columns and the claims each cell is measured against.

Experiments fill the cells (``Cell`` in their own modules); a table here says only
what it asks and what was claimed. ``seed`` is the usual advice: the comparison table
of a common guide to Celery, FastAPI BackgroundTasks and APScheduler's AsyncIOScheduler
(the key keeps the name of the document the lab started from); ``left-out`` is what
users report and that table does not ask.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class TableSpec:
    key: str
    title: str
    columns: tuple[str, ...]
    claims: Mapping[str, tuple[str, ...]]  # row -> the claim per column ("" none stated)
    note: str = ""

    @property
    def rows(self) -> tuple[str, ...]:
        return tuple(self.claims)


MECHANISMS = ("BackgroundTasks", "AsyncIOScheduler", "Celery")

SEED = TableSpec(
    key="seed",
    title="the usual advice's comparison table, measured",
    columns=MECHANISMS,
    claims={
        "Runs outside FastAPI": ("❌", "❌", "✅"),
        "Survives restarts": ("❌", "❌", "✅"),
        "Heavy tasks": ("❌", "❌", "✅"),
        "Scheduling": ("❌", "✅", "✅"),
        "Retries": ("❌", "❌", "✅"),
        "Horizontal scaling": ("❌", "❌", "✅"),
        "Infrastructure needed": ("❌", "❌", "✅"),
    },
)

LEFT_OUT = TableSpec(
    key="left-out",
    title="what the usual advice leaves out, measured",
    columns=MECHANISMS,
    claims={
        "Workers per replica": ("", "", ""),
        "ETA past the visibility timeout": ("", "", ""),
        "Prefetched tasks on a kill": ("", "", ""),
        "Pool child killed": ("", "", ""),
        "Network partition": ("", "", ""),
        "Clock skew": ("", "", ""),
        "Broker eviction": ("", "", ""),
        "Client disconnect": ("", "", ""),
    },
    note="failures users report in the trackers of APScheduler, Celery, celery-redbeat "
         "and FastAPI; no claim of the usual advice to compare with",
)

# The guide's recommended patterns ("BackgroundTasks for light work", "AsyncIOScheduler
# (single instance only)", "Celery (optionally with Celery Beat)") under what Kubernetes
# itself does to pods; each cell what a run counted and the fix it measured beside it.
KUBERNETES = TableSpec(
    key="kubernetes",
    title="The guide's recommended patterns, on Kubernetes",
    columns=("rollout", "pod delete", "drain", "OOM kill", "liveness restart", "scale-in",
             "node loss"),
    claims={
        "BackgroundTasks for light work": ("",) * 7,
        "AsyncIOScheduler in a single instance": ("",) * 7,
        "Celery (+ beat)": ("",) * 7,
    },
    note="the guide recommends these patterns and states nothing about Kubernetes; each cell "
         "is a run on a cluster (--platform kubernetes) and the fix measured beside it",
)

TABLES: dict[str, TableSpec] = {t.key: t for t in (SEED, LEFT_OUT, KUBERNETES)}
