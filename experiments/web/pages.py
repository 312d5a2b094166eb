"""What each page shows, gathered from the run store: the templates only lay it out.

Every figure on a run's page comes from re-checking its ``events.jsonl`` against its
``summary.json`` (``store.recheck``, as ``scalelab report`` does); a run that cannot be
re-checked shows the same one-line error, with whatever its stored summary still says.
The index lists what each ``summary.json`` recorded (re-checking a thousand histories
per page view would take minutes); a run's own page says when a re-check differs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from experiments import findings, live, store
from experiments.checker import VERDICTS, Unit
from experiments.model import BadInput
from experiments.web import timeline
from experiments.web.results import (
    FAILED,
    INTERRUPTED,
    PARTIAL,
    STAMP,
    VALIDITY,
    Entry,
    Kind,
    Results,
)
from experiments.web.tables import TableView, measured_tables

UNITS_SHOWN = 1000  # rows of the units table; the verdict filter narrows the rest
RUN_FILES = (store.SUMMARY_MD, store.SUMMARY_JSON, store.EVENTS, store.TIMELINE)
# What happened to the work, as the run page says it first: each outcome and its count.
OUTCOME_ROWS = ("lost", "duplicated", "recovered", "ok", "in_doubt", "unexpected")
COUNT_ROWS = (("expected", "units due or acknowledged"), ("executions", "finished executions"),
              *((v, v.replace("_", " ")) for v in VERDICTS),
              ("extra_executions", "extra executions"), ("refused", "refused by a guard"),
              ("late", "late (due units)"), ("faults", "faults"))


def label(summary: dict[str, Any]) -> str:
    """The experiment and the parameters it ran with that differ from its defaults."""
    from experiments import catalog

    if summary.get("label"):  # a suite's variant, named as the suite named it
        return str(summary["label"])
    name = str(summary.get("experiment", "?"))
    params = summary.get("parameters") or {}
    try:
        defaults = catalog.get(name).defaults()
    except BadInput:
        defaults = {}
    shown = [f"{k}={v}" for k, v in params.items() if k not in defaults or defaults[k] != v]
    return " ".join([name, *shown])


def experiment_of(entry: Entry) -> str:
    """An entry's experiment: from its summary, else from the runner's directory name."""
    if entry.summary is not None:
        return str(entry.summary.get("experiment", ""))
    name = entry.name.removesuffix(PARTIAL).removesuffix(FAILED).removesuffix(INTERRUPTED)
    m = STAMP.match(name)
    rest = name[m.end():].lstrip("-") if m else ""
    return rest.rsplit("-", 1)[0] if rest[-1:].isdigit() and "-" in rest else rest


def count(summary: dict[str, Any], key: str) -> Any:
    if key in VERDICTS:
        return (summary.get("counts") or {}).get(key, 0)
    if key == "faults":
        return len(summary.get("faults") or [])
    return summary.get(key, "")


# --- the index --------------------------------------------------------------------------

@dataclass
class Row:
    """One line of the index, every cell computed here: a thousand rows render quickly."""

    entry: Entry
    depth: int
    experiment: str
    label: str
    href: str
    when: str
    validity: str
    cells: tuple[tuple[str, Any], ...] = ()  # (key, count): due, each verdict, extra
    platform: str = ""
    seed: str = ""


def index(results: Results, experiment: str, valid: str) -> dict[str, Any]:
    entries = results.entries()
    rows: list[Row] = []
    experiments: set[str] = set()

    def row(e: Entry, depth: int) -> Row:
        exp = experiment_of(e)
        if exp:
            experiments.add(exp)
        s = e.summary
        r = Row(e, depth, exp, label(s) if s is not None else e.name,
                f"/{'suites' if e.kind == Kind.SUITE else 'runs'}/{quote(e.id, safe='/')}",
                e.when.strftime("%Y-%m-%d %H:%M:%S"), e.validity)
        if s is not None:
            counts = s.get("counts") or {}
            r.cells = (("expected", s.get("expected", "")),
                       *((v, counts.get(v, "")) for v in VERDICTS),
                       ("extra_executions", s.get("extra_executions", "")))
            r.platform, r.seed = str(s.get("platform", "")), str(s.get("seed", ""))
        return r

    def wanted(r: Row) -> bool:
        return (not experiment or r.experiment == experiment) and (not valid
                                                                   or r.validity == valid)

    total = 0
    for e in entries:
        if e.kind == Kind.SUITE:
            children = [row(c, 1) for c in e.children]
            total += len(children)
            shown = [c for c in children if wanted(c)]
            if shown or not (experiment or valid):
                rows += [row(e, 0), *shown]
        else:
            total += 1
            r = row(e, 0)
            if wanted(r):
                rows.append(r)
    return {"rows": rows, "experiments": sorted(experiments), "experiment": experiment,
            "valid": valid, "total": total, "count_keys": VERDICTS, "root": str(results.root)}


# --- a run --------------------------------------------------------------------------------

@dataclass
class RunView:
    """A run directory as its page shows it."""

    id: str
    entry: Entry
    summary: dict[str, Any] | None = None  # re-checked when possible, else as stored
    rechecked: bool = False
    error: str | None = None
    differences: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # how today's rule compares with the run's
    executions: dict[str, list[timeline.Bar]] = field(default_factory=dict)  # by work_id
    timeline: timeline.Timeline | None = None
    units: list[Unit] = field(default_factory=list)  # the checker's, in order of first start
    files: list[str] = field(default_factory=list)
    logs: list[str] = field(default_factory=list)
    events_so_far: int = 0
    status: dict[str, Any] | None = None  # a run in progress: its latest live status
    interruption: dict[str, Any] | None = None  # an interrupted run: what stopped it
    fix: findings.Offered | None = None  # what removes what it lost or duplicated

    @property
    def label(self) -> str:
        return label(self.summary) if self.summary is not None else self.entry.name

    @property
    def validity(self) -> str:
        if self.summary is not None and self.entry.kind == Kind.RUN:
            if self.error:
                return "unreadable"
            return findings.demonstration(self.summary)
        return self.entry.validity


def run_view(results: Results, path: Path) -> RunView:
    run_id = results.id_of(path)
    entry = results.entry(path)
    view = RunView(run_id, entry)
    view.files = [name for name in RUN_FILES if results.file(path, name) is not None]
    view.logs = [p.relative_to(path).as_posix() for p in results.logs(path)]
    if entry.kind == Kind.RUN:
        try:
            r = results.recheck(path)
        except BadInput as exc:
            view.error = str(exc)
            view.summary = entry.summary
        else:
            view.summary, view.rechecked = dict(r.summary), True
            view.differences, view.notes = r.differences, r.notes
            window = (float(r.summary["window"]["start"]), float(r.summary["window"]["end"]))
            view.timeline = timeline.build(r.events, r.result, window,
                                           r.summary.get("topology"))
            view.executions = view.timeline.by_work_id()
            first = {w: bars[0].start for w, bars in view.executions.items()}
            view.units = sorted(r.result.units.values(),
                                key=lambda u: (first.get(u.work_id, float("inf")), u.work_id))
            view.fix = findings.offered(view.summary, neighbours(results, path))
    elif entry.kind in (Kind.PARTIAL, Kind.INTERRUPTED):
        view.status = live.read_progress(path)
        view.interruption = read_interruption(path) if entry.kind == Kind.INTERRUPTED else None
        if results.file(path, store.EVENTS) is not None:
            try:  # the history so far, not judged: the run window is known only at the end
                events = live.read_events_so_far(path / store.EVENTS)
            except BadInput as exc:
                view.error = str(exc)
            else:
                view.events_so_far = len(events)
                view.timeline = timeline.build(events, None, None) if events else None
    return view


def read_interruption(path: Path) -> dict[str, Any] | None:
    """What ``interrupted.json`` says stopped a run (signal, phase), or None."""
    try:
        data = json.loads((path / live.INTERRUPTED_JSON).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def neighbours(results: Results, path: Path) -> list[tuple[str, dict[str, Any]]]:
    """The runs stored beside ``path`` (its suite's, or the top level's), newest first, by
    id: where the fix for this run may have been measured."""
    parent = results.id_of(path.parent) if path.parent != results.root else ""
    found = []
    for e in results.entries():
        group = e.children if e.kind == Kind.SUITE and e.id == parent else (
            [e] if not parent else [])
        found += [(c.id, c.summary) for c in group
                  if c.kind == Kind.RUN and c.summary is not None and c.id != results.id_of(path)]
    return found


def run_page(view: RunView, verdict: str) -> dict[str, Any]:
    units = [u for u in view.units if not verdict or u.verdict == verdict]
    drawing = timeline.draw(view.timeline) if view.timeline is not None else None
    by_verdict = {v: sum(1 for u in view.units if u.verdict == v) for v in VERDICTS}
    return {"run": view, "drawing": drawing, "units": units[:UNITS_SHOWN], "findings": findings,
            "units_total": len(units), "verdict": verdict, "by_verdict": by_verdict,
            "count_rows": COUNT_ROWS, "count": count, "validity": VALIDITY,
            "poll": view.entry.kind == Kind.PARTIAL, "outcomes": OUTCOME_ROWS}


# --- a suite ------------------------------------------------------------------------------

@dataclass
class SuiteView:
    id: str
    entry: Entry
    runs: list[RunView]
    tables: list[TableView]
    has_report: bool


def suite_view(results: Results, path: Path) -> SuiteView:
    entry = results.entry(path, nested=False)
    runs = [run_view(results, path / c.name) for c in entry.children]
    judged = [(r.id, r.label, r.summary) for r in runs
              if r.rechecked and r.summary is not None]
    return SuiteView(results.id_of(path), entry, runs, measured_tables(judged),
                     results.file(path, "report.md") is not None)


# --- two runs -----------------------------------------------------------------------------

def compare_page(a: RunView, b: RunView) -> dict[str, Any]:
    pa = (a.summary or {}).get("parameters") or {}
    pb = (b.summary or {}).get("parameters") or {}
    params = [(k, pa.get(k, "—"), pb.get(k, "—")) for k in dict.fromkeys([*pa, *pb])]
    differing = [p for p in params if p[1] != p[2]]
    same = [p for p in params if p[1] == p[2]]
    for key in ("experiment", "platform", "seed"):
        va, vb = (a.summary or {}).get(key, "—"), (b.summary or {}).get(key, "—")
        (differing if va != vb else same).insert(0, (key, va, vb))
    counts = []
    for key, title in COUNT_ROWS:
        ca = count(a.summary, key) if a.summary else ""
        cb = count(b.summary, key) if b.summary else ""
        diff = cb - ca if isinstance(ca, int) and isinstance(cb, int) else ""
        counts.append((title, ca, cb, diff))
    drawn = [t for t in (a.timeline, b.timeline) if t is not None]
    x_range = (min(t.x_low for t in drawn), max(t.t_end for t in drawn)) if drawn else None
    drawings = [timeline.draw(v.timeline, x_range) if v.timeline is not None else None
                for v in (a, b)]
    return {"a": a, "b": b, "differing": differing, "same": same, "counts": counts,
            "drawings": drawings, "validity": VALIDITY}


def run_choices(results: Results) -> list[tuple[str, str, str]]:
    """Every stored run (id, label, experiment), newest first, for the compare form."""
    out = []
    for e in results.entries():
        for r in (e.children if e.kind == Kind.SUITE else [e]):
            if r.kind == Kind.RUN and r.summary is not None:
                out.append((r.id, label(r.summary), str(r.summary.get("experiment", ""))))
    return out


def preselected(choices: list[tuple[str, str, str]], run: RunView) -> str:
    """The run the compare form offers first: the newest other run of the same experiment."""
    experiment = (run.summary or {}).get("experiment")
    return next((i for i, _, e in choices if e == experiment and i != run.id),
                next((i for i, _, _ in choices if i != run.id), ""))

