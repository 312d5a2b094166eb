"""The fixes matrix: scheduling mechanism (rows) by fault (columns), each cell counted.

The answers users reach for when several replicas run one schedule — the lab's own
guards on APScheduler 3, APScheduler 4 on a shared data store, arq cron, one Celery
beat or two with celery-redbeat's lock, a Kubernetes CronJob — each make a claim
(``shared/USERS.md`` quotes them). Every cell of the matrix is one ordinary run of
an experiment of the catalogue (``scheduler-duplicates`` or ``beat-duplicates``)
with the row's mechanism and the column's fault, so its run directory holds the
history, the summary and the timeline like any other run; the matrix gathers the
ledger's counts and writes them, beside each row's claim, to ``matrix.md`` and
``matrix.json``.

The columns are the fault table's (``chaos.faults``: each fault that declares a
column). A cell that cannot be measured says why instead: ``kind only`` (the
mechanism needs the kubernetes platform), ``n/a — why`` (the platform lacks the
fault's capability, or the fault has nothing to hit, e.g. a data-store outage
without a data store), ``not measured`` (the row's experiment has no such fault
option), ``not yet`` (the fault is not in the lab).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chaos.faults import COLUMNS as FAULT_COLUMNS
from chaos.faults import FAULTS
from chaos.platforms import PLATFORMS
from experiments.model import BadInput

# Timing: 1 s ticks of 0.3 s work, a fault 2.5 s in, leases short enough to pause past.
INTERVAL = 1.0
TICK_SECONDS = 0.3
FAULT_AT = 2.5
LEASE = 2.0  # APScheduler 4's lease_duration and the leader guard's lease, in the matrix
PAUSE_FOR = LEASE + 2.0  # a pause or a partition: past the lease and redbeat's lock
OUTAGE_FOR = 2.0
SKEW = 3.0  # seconds one instance's clock is set ahead: past the interval
BEAT_LOCK = 2.0


@dataclass(frozen=True)
class Row:
    """A scheduling mechanism: which experiment runs it, with which values, and its claim."""

    key: str
    label: str
    experiment: str
    values: Mapping[str, Any]
    claim: str  # what the mechanism's documentation (or the lab's guard) promises
    source: str  # where the claim comes from
    quick: bool = True  # in ``--quick``
    kind_only: bool = False  # needs the kubernetes platform
    faults: frozenset[str] = field(default_factory=frozenset)  # the columns it can take
    # columns where the fault has nothing to hit, and why ("no broker ...")
    na: Mapping[str, str] = field(default_factory=dict)
    # The claim as each cell checks it: no tick duplicated (or, where the documentation
    # says every instance runs it, duplicates), and whether it claims none is lost.
    dup_expected: bool = False
    no_loss: bool = False

    @property
    def claim_short(self) -> str:
        once = "each tick on every instance" if self.dup_expected else "no duplicate"
        return once + (", none lost" if self.no_loss else "")
    # columns whose effect shows only after longer: their run's duration, quick or not
    durations: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Column:
    key: str
    label: str
    short: str  # its heading in the terminal grid
    settle: float = 0.0  # a run under this fault lasts at least this long


# The columns are the fault table's: each fault that declares one, after the steady run.
COLUMNS = (Column("none", "none (steady)", "none"),
           *(Column(f.name, f.column, f.short, f.settle) for f in FAULT_COLUMNS))
NOT_YET: frozenset[str] = frozenset()  # faults the lab does not have yet

# A scheduler row takes every column but the data-store outage (only APScheduler 4 has one).
_SCHEDULER_FAULTS = frozenset(c.key for c in COLUMNS) - {"datastore-outage"}
_PG_ONLY = {c: "no broker (PostgreSQL is its one store)"
            for c in ("broker-outage", "partition")}
_PG_FAULTS = _SCHEDULER_FAULTS - set(_PG_ONLY) | {"datastore-outage"}
_SD = "scheduler-duplicates"
_BD = "beat-duplicates"

ROWS = (
    Row("apscheduler3", "APScheduler 3, no guard", _SD,
        {"scheduler": "apscheduler3", "guard": "none"},
        "no leader election, no locking, no shared state: each replica runs each tick",
        "the usual advice; APScheduler 3 FAQ", faults=_SCHEDULER_FAULTS, dup_expected=True),
    Row("apscheduler3-redis-lock", "APScheduler 3 + per-tick Redis lock", _SD,
        {"scheduler": "apscheduler3", "guard": "redis-lock"},
        "the lab's guard: SET NX PX per tick, one replica runs it",
        "services/api/guards.py", faults=_SCHEDULER_FAULTS),
    Row("apscheduler3-leader", "APScheduler 3 + leader lease", _SD,
        {"scheduler": "apscheduler3", "guard": "leader", "fencing": False},
        "the lab's guard: only the lease holder runs ticks",
        "services/api/guards.py", quick=False, faults=_SCHEDULER_FAULTS),
    Row("apscheduler3-leader-fencing", "APScheduler 3 + leader lease + fencing", _SD,
        {"scheduler": "apscheduler3", "guard": "leader", "fencing": True},
        "the lab's guard: a deposed leader's effect is refused by its fencing token",
        "services/api/guards.py", quick=False, faults=_SCHEDULER_FAULTS),
    Row("apscheduler4", "APScheduler 4.0.0a6 (pre-release), shared data store", _SD,
        {"scheduler": "apscheduler4"},
        "schedulers sharing a data store coordinate \"so that the schedules don't get "
        "processed more than once\"",
        "APScheduler 4 user guide, \"Using multiple schedulers\" (4.0.0a6 is a pre-release)",
        faults=_SCHEDULER_FAULTS | {"datastore-outage"}),
    Row("arq", "arq cron (unique=True)", _SD, {"scheduler": "arq"},
        "the job \"will only be run once even if multiple workers are running\"",
        "arq docs, cron(unique=True)", faults=_SCHEDULER_FAULTS,
        # arq keeps a cron job's in-progress key 60 s after it ends (keep_cronjob_progress):
        # a paused worker's stale re-enqueue of a tick runs when that key expires.
        durations={"pause": 70.0}),
    Row("procrastinate", "procrastinate periodic (PostgreSQL)", _SD,
        {"scheduler": "procrastinate"},
        "every worker defers each periodic run; a unique key per task and fire time lets "
        "one defer through, so each run is deferred once",
        "procrastinate docs, \"Launch a task periodically\"; procrastinate#289",
        faults=_PG_FAULTS, na=_PG_ONLY),
    Row("procrastinate-stalled-retry", "procrastinate + retry stalled jobs", _SD,
        {"scheduler": "procrastinate", "stalled_retry": True},
        "without it a SIGKILLed worker's job stays \"doing\" forever; a periodic retry "
        "of jobs whose worker's heartbeat stopped runs it again",
        "procrastinate docs, \"Retry stalled jobs\"; procrastinate#307",
        faults=_PG_FAULTS, na=_PG_ONLY, no_loss=True),
    Row("rq", "RQ scheduled jobs, rq worker --with-scheduler", _SD, {"scheduler": "rq"},
        "however many workers run --with-scheduler, one scheduler (a lock in Redis) moves "
        "each scheduled job to its queue once; known: duplicates when the lock lapses, a "
        "killed worker's job not run again",
        "RQ docs, \"Scheduling jobs\"; rq#1354, rq#1531, rq#2338, rq#2015",
        faults=_SCHEDULER_FAULTS),
    Row("huey", "Huey periodic, every consumer", _SD, {"scheduler": "huey"},
        "no at-least-once delivery (a task is taken off the queue before it runs); every "
        "consumer with periodic tasks on enqueues each one: run one, the rest --no-periodic",
        "Huey docs, \"Multiple consumers\"; huey#716", faults=_SCHEDULER_FAULTS,
        dup_expected=True),
    Row("huey-one-periodic", "Huey periodic, one consumer (the rest --no-periodic)", _SD,
        {"scheduler": "huey-one-periodic", "replicas": 2},
        "one consumer enqueues each periodic task once; a task killed mid-run is not "
        "run again (no at-least-once)", "Huey docs, \"Multiple consumers\"; huey#716",
        faults=_SCHEDULER_FAULTS),
    Row("dramatiq", "Dramatiq delayed messages (Redis broker, its defaults)", _SD,
        {"scheduler": "dramatiq"},
        "a message is acknowledged after its actor finishes; a dead worker's messages go "
        "back on the queue once its heartbeat is 60 s old; known: requeued while the "
        "worker was only slow, delayed messages run twice",
        "Dramatiq docs, \"Message acknowledgement\", RedisBroker; dramatiq#527, "
        "dramatiq#431", faults=_SCHEDULER_FAULTS),
    Row("celery-beat", "Celery beat, one beat", _BD, {"beat_replicas": 1, "guard": "none"},
        "beat must be a singleton; one beat sends each task once", "Celery docs",
        quick=False, faults=frozenset({"none", "kill"})),
    Row("celery-beat-2", "Celery beat, two beats", _BD, {"beat_replicas": 2, "guard": "none"},
        "two beats send every periodic task twice", "Celery docs",
        faults=frozenset({"none"}), dup_expected=True),
    Row("celery-redbeat", "Celery beat, two beats + celery-redbeat lock", _BD,
        {"beat_replicas": 2, "guard": "redbeat"},
        "a lock in Redis lets one beat send", "celery-redbeat docs",
        faults=frozenset({"none", "kill"})),
    Row("k8s-cronjob", "Kubernetes CronJob", "", {},
        "a Job \"about once per execution time\" — two or none may be created; jobs "
        "should be idempotent", "Kubernetes docs, CronJob", kind_only=True),
)


def column_values(row: Row, column: str, quick: bool) -> dict[str, Any]:
    """The experiment's values for this row under this column's fault."""
    values: dict[str, Any] = dict(row.values)
    if row.experiment == _BD:
        values.update(interval=INTERVAL, duration=6.0 if quick else 12.0,
                      lock_timeout=BEAT_LOCK)
        if column == "kill":
            values.update(kill_holder=True, kill_at=FAULT_AT)
        return values
    values.update(interval=INTERVAL, duration=9.0 if quick else 20.0,
                  tick_seconds=TICK_SECONDS, lease=LEASE)
    values.setdefault("replicas", 3)
    if column == "none":
        return values
    fault = FAULTS[column]
    values["duration"] = row.durations.get(column, max(values["duration"], fault.settle))
    # an instance stopped or cut off stays so past the lease; a broker is out 2 s
    values.update(fault=column, fault_at=FAULT_AT, skew=SKEW,
                  fault_for=PAUSE_FOR if fault.target == "instance" else OUTAGE_FOR)
    return values


@dataclass
class Cell:
    """One cell: a planned run, or the reason there is none; then its counts."""

    row: str
    column: str
    experiment: str = ""
    seed: int = 1
    values: dict[str, Any] = field(default_factory=dict)
    reason: str = ""  # why no run: "kind only", "n/a ...", "not yet"
    counts: dict[str, Any] | None = None  # filled after the run
    run_dir: str = ""
    error: str = ""

    @property
    def label(self) -> str:
        return f"matrix {self.row} / {self.column} / seed {self.seed}"

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"row": self.row, "column": self.column, "seed": self.seed}
        if self.reason:
            data["measured"] = False
            data["reason"] = self.reason
            return data
        data.update(measured=self.counts is not None, experiment=self.experiment,
                    parameters=self.values, run_dir=self.run_dir)
        if self.counts is not None:
            data.update(self.counts)
        if self.error:
            data["error"] = self.error
        return data


def select_rows(only: str | None, quick: bool) -> list[Row]:
    if not only:
        return [r for r in ROWS if r.quick or not quick]
    by_key = {r.key: r for r in ROWS}
    chosen = []
    for key in only.split(","):
        key = key.strip()
        if key not in by_key:
            raise BadInput(f"--only: unknown row {key!r} (rows: {', '.join(by_key)})")
        chosen.append(by_key[key])
    return chosen


def plan(rows: Sequence[Row], quick: bool, platform: str = "local",
         seeds: Sequence[int] = (1,)) -> list[Cell]:
    """Each row by each column: the run to do, or why there is none (the platform's
    reason first: a fault it lacks is an n/a cell, never a failed run), on each seed."""
    entry = PLATFORMS[platform]
    cells = []
    for row in rows:
        for col, seed in ((c, s) for c in COLUMNS for s in seeds):
            cell = Cell(row.key, col.key, seed=seed)
            lacks = entry.lacks(FAULTS[col.key].capability) if col.key in FAULTS else ""
            if row.kind_only and not entry.cluster:
                cell.reason = "kind only"
            elif lacks and col.key in row.faults:
                cell.reason = f"n/a — {lacks}"
            elif col.key in NOT_YET:
                cell.reason = "not yet"
            elif col.key in row.na:
                cell.reason = f"n/a: {row.na[col.key]}"
            elif col.key == "datastore-outage" and col.key not in row.faults:
                cell.reason = "n/a: no data store"
            elif col.key not in row.faults:
                cell.reason = "not measured"
            else:
                cell.experiment = row.experiment
                cell.values = column_values(row, col.key, quick)
            cells.append(cell)
    return cells


def counts_of(summary: Mapping[str, Any]) -> dict[str, Any]:
    c = summary.get("counts") or {}
    return {"due": int(summary.get("expected", 0)), "ok": int(c.get("ok", 0)),
            "lost": int(c.get("lost", 0)), "duplicated": int(c.get("duplicated", 0)),
            "recovered": int(c.get("recovered", 0)),
            "extra_executions": int(summary.get("extra_executions", 0)),
            "in_doubt": int(c.get("in_doubt", 0)), "valid": bool(summary.get("valid")),
            "fault_errors": list(summary.get("fault_errors") or [])}


def run_cells(cells: list[Cell], results: Path, *, jobs: int,
              platform: str = "local", platform_options: Mapping[str, Any] | None = None,
              ) -> None:
    """Run every planned cell (``jobs`` at a time, each its own harness) and fill its counts;
    a cell whose run failed says why."""
    from experiments import catalog
    from experiments.suite import Planned, run_many

    todo = [c for c in cells if not c.reason]
    planned = []
    for c in todo:
        spec = catalog.get(c.experiment)
        planned.append(Planned(c.label, spec, spec.values(c.values), seed=c.seed))
    done = run_many(planned, results, seed=1, jobs=jobs, keep_going=True,
                    platform=(PLATFORMS[platform], dict(platform_options or {})))
    for cell, outcome in zip(todo, done, strict=True):
        if outcome.summary is None:
            cell.error = outcome.error
            continue
        cell.counts = counts_of(outcome.summary)
        if outcome.directory is not None:
            cell.run_dir = outcome.directory.relative_to(results).as_posix()


def run(*, quick: bool, jobs: int, only: str | None, results: Path, seed: int,
        seeds: int = 1, platform: str = "local",
        platform_options: Mapping[str, Any] | None = None) -> tuple[list[Cell], Path]:
    """Plan the grid (``seeds`` seeds from ``seed`` on), run its cells, write matrix.md and
    matrix.json; the cells and where."""
    from experiments.matrix_report import write
    from experiments.suite import suite_directory

    cells = plan(select_rows(only, quick), quick, platform, seeds=range(seed, seed + seeds))
    directory = suite_directory(results, "matrix")
    run_cells(cells, directory, jobs=jobs, platform=platform,
              platform_options=platform_options)
    write(cells, directory, quick=quick)
    return cells, directory
