"""What a person reads: result tables for the terminal and Markdown for the run store."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rich.table import Table

from experiments.checker import VERDICTS


def variant_label(summary: dict[str, Any], varied: Sequence[str] = ()) -> str:
    params = summary.get("parameters", {})
    shown = [f"{k}={params[k]}" for k in varied if k in params]
    return str(summary["experiment"]) + (" " + " ".join(shown) if shown else "")


ROWS = (("expected", "units due or acknowledged"), ("executions", "finished executions"),
        *((v, v.replace("_", " ")) for v in VERDICTS),
        ("extra_executions", "extra executions"), ("late", "late (due units)"),
        ("faults", "faults"), ("valid", "expectation held"))


def _cell(summary: dict[str, Any], key: str) -> str:
    if key in VERDICTS:
        return str(summary["counts"][key])
    if key == "faults":
        return str(len(summary["faults"]))
    if key == "valid":
        return "yes" if summary["valid"] else "NO"
    return str(summary.get(key, ""))


def side_by_side(summaries: Sequence[dict[str, Any]], labels: Sequence[str]) -> Table:
    """One column per run: the counts of each, next to each other."""
    table = Table(title="scalelab: measured", show_lines=False)
    table.add_column("")
    for label in labels:
        table.add_column(label, justify="right")
    for key, title in ROWS:
        table.add_row(title, *(_cell(s, key) for s in summaries))
    return table


def runs_table(summaries: Sequence[dict[str, Any]], labels: Sequence[str]) -> Table:
    """One row per run: the counts that matter, compact enough for many runs."""
    table = Table(title="scalelab suite: measured, one row per run")
    table.add_column("run", max_width=36, overflow="fold")
    for title in ("due", "ok", "lost", "dup", "recov", "doubt", "extra", "held"):
        table.add_column(title, justify="right")
    for s, label in zip(summaries, labels, strict=True):
        c = s["counts"]
        table.add_row(label, str(s["expected"]), str(c["ok"]), str(c["lost"]),
                      str(c["duplicated"]), str(c["recovered"]), str(c["in_doubt"]),
                      str(s["extra_executions"]), "yes" if s["valid"] else "NO")
    return table


def seed_table(summaries: Sequence[dict[str, Any]]) -> Table:
    """The seed's comparison table for the terminal: each cell its claim and the measurement."""
    table = Table(title="the seed's comparison table, measured", show_lines=True)
    table.add_column("Feature")
    for column in COLUMNS:
        table.add_column(column, ratio=1)
    for row, cells in measured_cells(summaries):
        table.add_row(row, *(f"seed {claim}\n" + ("\n".join(said) if said else "not measured")
                             for claim, said in cells))
    return table


def summary_table(summary: dict[str, Any]) -> Table:
    return side_by_side([summary], [variant_label(summary)])


def markdown_counts(summaries: Sequence[dict[str, Any]], labels: Sequence[str]) -> str:
    head = "| | " + " | ".join(labels) + " |"
    rule = "| --- |" + " ---: |" * len(labels)
    rows = [f"| {title} | " + " | ".join(_cell(s, key) for s in summaries) + " |"
            for key, title in ROWS]
    return "\n".join([head, rule, *rows])


def _md(text: Any) -> str:
    """A value safe inside a Markdown table cell."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def verdict_sentence(summary: dict[str, Any]) -> str:
    held = "held" if summary.get("valid") else "did NOT hold"
    return f"The expectation {held}: {summary.get('expectation', '(none stated)')}."


def _fault_rows(summary: dict[str, Any]) -> list[str]:
    rows = []
    for f in summary.get("faults", []):
        inflight = f.get("inflight")
        work = ("n/a" if inflight is None
                else f"yes ({inflight} running)" if inflight else "no (idle)")
        extra = ", ".join(f"{k}={v}" for k, v in f.items()
                          if k not in ("step", "action", "target", "at", "inflight", "mid_job"))
        rows.append(f"| {float(f.get('at', 0)):.2f} | {_md(f.get('action', ''))} | "
                    f"{_md(f.get('target', ''))} | {work} | "
                    f"{'yes' if f.get('mid_job') else 'no'} | {_md(f.get('step', ''))}"
                    f"{' (' + _md(extra) + ')' if extra else ''} |")
    return rows


def markdown_summary(summary: dict[str, Any], timeline: str | None = "timeline.png") -> str:
    """``summary.md``: what ran, with what, which faults, the counts, and the verdict."""
    window = summary.get("window", {})
    lines = [
        f"# {_md(variant_label(summary))}",
        "",
        f"**{verdict_sentence(summary)}**",
        "",
        "## What ran",
        "",
        f"- experiment: `{summary['experiment']}` on platform `{summary.get('platform', '?')}`",
        f"- seed: {summary.get('seed', '?')} (run id `{summary.get('run_id', '?')}`)",
        f"- run window: {window.get('duration', '?')} s on the ledger clock "
        f"(wall time of the whole run {summary.get('wall_seconds', '?')} s)",
    ]
    requests = summary.get("requests")
    if requests and requests.get("sent"):
        lines.append(f"- requests: {requests['sent']} sent, {requests['acknowledged']} "
                     f"acknowledged, {requests['failed']} failed")
    versions = summary.get("versions") or {}
    if versions:
        lines.append("- versions: " + ", ".join(f"{k} {v}" for k, v in sorted(versions.items())))
    lines += ["", "## Parameters", "", "| parameter | value |", "| --- | --- |"]
    lines += [f"| {_md(k)} | {_md(v)} |" for k, v in summary.get("parameters", {}).items()]
    lines += ["", "## Faults", ""]
    faults = _fault_rows(summary)
    if faults:
        lines += ["| at (s) | fault | target | work in flight | mid-job | step |",
                  "| ---: | --- | --- | --- | --- | --- |", *faults]
        mid = summary.get("mid_job_faults") or {}
        if mid.get("fired"):
            lines += ["", f"{mid['fired']} mid-job fault(s) fired, "
                          f"{mid.get('with_work_in_flight', 0)} with work in flight."]
    else:
        lines.append("None.")
    errors = summary.get("fault_errors") or []
    if errors:
        lines += ["", "Faults that could not be applied:", "", *(f"- {_md(e)}" for e in errors)]
    lines += ["", "## Counts", "", markdown_counts([summary], [variant_label(summary)])]
    measured = summary.get("measured") or {}
    if measured:
        lines += ["", "## Measured", "", "| figure | value |", "| --- | --- |"]
        lines += [f"| {_md(k)} | {_md(v)} |" for k, v in measured.items()]
    if timeline:
        lines += ["", "## Timeline", "", f"![timeline of the run]({timeline})"]
    return "\n".join(lines) + "\n"


# --- the suite's report.md: the seed's comparison table, measured ---------------------------

COLUMNS = ("BackgroundTasks", "AsyncIOScheduler", "Celery")
# The seed's claims (seed/celery-vs-backgroundtasks-vs-apscheduler.md), row by row.
SEED_CLAIMS: dict[str, tuple[str, str, str]] = {
    "Runs outside FastAPI": ("❌", "❌", "✅"),
    "Survives restarts": ("❌", "❌", "✅"),
    "Heavy tasks": ("❌", "❌", "✅"),
    "Scheduling": ("❌", "✅", "✅"),
    "Retries": ("❌", "❌", "✅"),
    "Horizontal scaling": ("❌", "❌", "✅"),
    "Infrastructure needed": ("❌", "❌", "✅"),
}


def _n(s: dict[str, Any], verdict: str) -> str:
    """``lost 7/20``: a verdict's count over the units due or acknowledged."""
    return f"{verdict.replace('_', ' ')} {s['counts'].get(verdict, 0)}/{s.get('expected', 0)}"


def _p(s: dict[str, Any], name: str) -> Any:
    return s.get("parameters", {}).get(name)


@dataclass(frozen=True)
class Measurement:
    """Which runs fill a cell of the seed's table, and how a run is said there."""

    row: str
    column: str
    experiment: str
    where: Mapping[str, Any]  # parameters the run must have
    says: Callable[[dict[str, Any]], str]

    def matches(self, s: dict[str, Any]) -> bool:
        """A ``where`` value is the parameter's value, or a test of it."""
        return s.get("experiment") == self.experiment and all(
            v(_p(s, k)) if callable(v) else _p(s, k) == v for k, v in self.where.items())


def _some(n: Any) -> bool:
    return isinstance(n, int) and n > 0


def _ran_in(s: dict[str, Any]) -> str:
    by = s.get("executions_by_component") or {}
    return ", ".join(f"{n} executions in {c} processes" for c, n in sorted(by.items()))


def _processes(s: dict[str, Any]) -> str:
    replicas = {c: n for c, n in (s.get("topology") or {}).items() if n}
    return " + ".join(f"{n} {c}" for c, n in replicas.items()) + " + Redis"


M = Measurement
MEASUREMENTS: tuple[Measurement, ...] = (
    M("Runs outside FastAPI", "BackgroundTasks", "background-loss", {"mechanism": "background"},
      _ran_in),
    M("Runs outside FastAPI", "AsyncIOScheduler", "scheduler-duplicates", {"guard": "none"},
      _ran_in),
    M("Runs outside FastAPI", "Celery", "background-loss", {"mechanism": "celery"}, _ran_in),
    M("Infrastructure needed", "BackgroundTasks", "background-loss",
      {"mechanism": "background"}, _processes),
    M("Infrastructure needed", "AsyncIOScheduler", "scheduler-duplicates", {"guard": "none"},
      _processes),
    M("Infrastructure needed", "Celery", "background-loss", {"mechanism": "celery"},
      lambda s: _processes(s) + " broker"),
    M("Survives restarts", "BackgroundTasks", "background-loss",
      {"mechanism": "background", "kill": "sigkill"},
      lambda s: f"{_n(s, 'lost')} on SIGKILL of {_p(s, 'kills')} replica(s)"),
    M("Survives restarts", "BackgroundTasks", "background-loss",
      {"mechanism": "background", "kill": "sigterm"},
      lambda s: f"{_n(s, 'lost')} on SIGTERM ({_p(s, 'shutdown_grace')} s grace)"),
    M("Survives restarts", "BackgroundTasks", "restart-survival", {"mechanism": "background"},
      lambda s: f"{_n(s, 'lost')} in a rolling restart"),
    M("Survives restarts", "Celery", "background-loss", {"mechanism": "celery"},
      lambda s: f"{_n(s, 'lost')} when API replicas were killed"),
    M("Survives restarts", "Celery", "restart-survival", {"mechanism": "celery"},
      lambda s: f"{_n(s, 'lost')} in a rolling restart of the API"),
    M("Survives restarts", "Celery", "celery-kill", {"acks": "early", "kill_at": "mid-job"},
      lambda s: f"{_n(s, 'lost')} on worker SIGKILL with default (early) acks"),
    M("Survives restarts", "Celery", "celery-kill",
      {"acks": "late", "kill_at": "mid-job", "kills": _some},
      lambda s: f"{_n(s, 'lost')}, {_n(s, 'recovered')} on worker SIGKILL with acks late"),
    M("Survives restarts", "Celery", "beat-duplicates", {"kill_holder": True},
      lambda s: f"{s['counts'].get('lost', 0)} tick(s) missed when the lock-holding beat "
                "was killed"),
    M("Heavy tasks", "AsyncIOScheduler", "loop-starvation", {"block_seconds": 0.0},
      lambda s: f"no blocking: {s.get('late', 0)}/{s.get('expected', 0)} ticks late"),
    M("Heavy tasks", "AsyncIOScheduler", "loop-starvation", {},
      lambda s: "" if not _p(s, "block_seconds") else
      f"requests blocking the loop {_p(s, 'block_seconds')} s: {s.get('late', 0)}/"
      f"{s.get('expected', 0)} ticks late, {s['counts'].get('lost', 0)} missed"),
    M("Scheduling", "AsyncIOScheduler", "scheduler-duplicates", {"guard": "none"},
      lambda s: f"{s.get('expected', 0)} due ticks ran {s.get('executions', 0)} times"),
    M("Scheduling", "Celery", "beat-duplicates", {"guard": "none"},
      lambda s: f"{_p(s, 'beat_replicas')} beats: {s.get('expected', 0)} due ticks ran "
                f"{s.get('executions', 0)} times"),
    M("Scheduling", "Celery", "beat-duplicates", {"guard": "redbeat", "kill_holder": False},
      lambda s: f"redbeat lock: {_n(s, 'duplicated')}"),
    M("Retries", "BackgroundTasks", "background-loss", {"mechanism": "background"},
      lambda s: f"{_n(s, 'recovered')} after {_p(s, 'kill')} (none retried)"),
    M("Retries", "AsyncIOScheduler", "leader-failover", {"fencing": False},
      lambda s: f"{s['counts'].get('lost', 0)} tick(s) lost in a failover, none re-run"),
    M("Retries", "Celery", "celery-kill", {"acks": "early", "kill_at": "mid-job"},
      lambda s: f"early acks: {_n(s, 'recovered')}"),
    M("Retries", "Celery", "celery-kill", {"acks": "late", "kill_at": "mid-job", "kills": _some},
      lambda s: f"acks late: {_n(s, 'recovered')} by redelivery"
                + (f", median {s['measured']['kill_to_redelivery_median']:.1f} s after the kill"
                   if (s.get("measured") or {}).get("kill_to_redelivery_median") is not None
                   else "")),
    M("Horizontal scaling", "BackgroundTasks", "background-loss",
      {"mechanism": "background", "kill": "sigkill"},
      lambda s: f"{_p(s, 'replicas')} replicas: {_n(s, 'duplicated')}"),
    M("Horizontal scaling", "AsyncIOScheduler", "scheduler-duplicates", {"guard": "none"},
      lambda s: f"{_p(s, 'replicas')}"
                + (f"→{_p(s, 'scale_to')}" if _p(s, "scale_to") else "")
                + f" replicas unguarded: {_n(s, 'duplicated')}, "
                  f"{s.get('extra_executions', 0)} extra runs"),
    M("Horizontal scaling", "AsyncIOScheduler", "scheduler-duplicates", {"guard": "redis-lock"},
      lambda s: f"Redis lock per tick: {_n(s, 'duplicated')}, {_n(s, 'lost')}"),
    M("Horizontal scaling", "AsyncIOScheduler", "leader-failover", {},
      lambda s: f"leader election, leader paused{' (fenced)' if _p(s, 'fencing') else ''}: "
                f"{_n(s, 'duplicated')}, {s.get('refused', 0)} refused"),
    M("Horizontal scaling", "Celery", "beat-duplicates", {"guard": "none"},
      lambda s: f"{_p(s, 'beat_replicas')} beat replicas: {_n(s, 'duplicated')}"),
    M("Horizontal scaling", "Celery", "celery-kill", {"acks": "late", "kill_at": "after-effect"},
      lambda s: f"acks late, kill after the effect{' (idempotent)' if _p(s, 'idempotent') else ''}"
                f": {_n(s, 'duplicated')}"),
    M("Horizontal scaling", "Celery", "celery-kill", {"acks": "late", "kills": 0},
      lambda s: f"task longer than the visibility timeout: {_n(s, 'duplicated')}"),
)


def measured_cells(
        summaries: Sequence[dict[str, Any]]) -> list[tuple[str, list[tuple[str, list[str]]]]]:
    """Per row of the seed's table, per column: the seed's claim and what the runs said."""
    return [(row, [(claim, [text for m in MEASUREMENTS if m.row == row and m.column == column
                            for s in summaries if m.matches(s) and (text := m.says(s))])
                   for column, claim in zip(COLUMNS, claims, strict=True)])
            for row, claims in SEED_CLAIMS.items()]


def measured_seed_table(summaries: Sequence[dict[str, Any]]) -> str:
    """The seed's comparison table, each cell its claim and what the suite measured."""
    lines = ["| Feature | " + " | ".join(COLUMNS) + " |",
             "| --- |" + " --- |" * len(COLUMNS)]
    for row, cells in measured_cells(summaries):
        lines.append(f"| {row} | " + " | ".join(
            f"seed {claim}; measured: " + "; ".join(_md(t) for t in said)
            if said else f"seed {claim}; not measured" for claim, said in cells) + " |")
    return "\n".join(lines)


def suite_markdown(runs: Sequence[tuple[str, dict[str, Any], str]], *, seed: int,
                   quick: bool) -> str:
    """``report.md`` of a suite: ``runs`` are (label, summary, run directory relative to it)."""
    summaries = [s for _, s, _ in runs]
    held = sum(1 for s in summaries if s.get("valid"))
    lines = [
        "# scalelab suite: the comparison table, measured",
        "",
        f"{len(runs)} runs (seed {seed}{', quick' if quick else ''}); the stated expectation "
        f"held in {held} of them.",
        "",
        "Each cell: the seed's claim, then what the runs of this suite measured "
        "(verdict count / units due or acknowledged).",
        "",
        measured_seed_table(summaries),
    ]
    by_experiment: dict[str, list[tuple[str, dict[str, Any], str]]] = {}
    for run in runs:
        by_experiment.setdefault(str(run[1]["experiment"]), []).append(run)
    for name, group in by_experiment.items():
        lines += ["", f"## {name}", "",
                  markdown_counts([s for _, s, _ in group], [_md(label) for label, _, _ in group])]
        for label, s, where in group:
            lines += ["", f"### {_md(label)}", "", verdict_sentence(s), "",
                      f"[summary]({where}/summary.md) · [events]({where}/events.jsonl)", "",
                      f"![timeline of {_md(label)}]({where}/timeline.png)"]
    return "\n".join(lines) + "\n"
