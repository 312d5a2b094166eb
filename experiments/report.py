"""What a person reads: result tables for the terminal and Markdown for the run store."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from rich.table import Table

from experiments import findings
from experiments.checker import VERDICTS
from experiments.summary import Summary
from experiments.tables import TABLES


def variant_label(summary: Mapping[str, Any], varied: Sequence[str] = ()) -> str:
    if summary.get("label") and not varied:
        return str(summary["label"])
    params = summary.get("parameters", {})
    shown = [f"{k}={params[k]}" for k in varied if k in params]
    return str(summary["experiment"]) + (" " + " ".join(shown) if shown else "")


ROWS = (("expected", "units due or acknowledged"), ("executions", "finished executions"),
        *((v, v.replace("_", " ")) for v in VERDICTS),
        ("extra_executions", "extra executions"), ("late", "late (due units)"),
        ("faults", "faults"), ("valid", "claim"))


def _cell(summary: Summary, key: str) -> str:
    if key in VERDICTS:
        return str(summary["counts"][key])
    if key == "faults":
        return str(len(summary["faults"]))
    if key == "valid":
        return findings.DEMONSTRATION[findings.demonstration(summary)]
    return str(summary.get(key, ""))


def side_by_side(summaries: Sequence[Summary], labels: Sequence[str]) -> Table:
    """One column per run: the counts of each, next to each other."""
    table = Table(title="scalelab: measured", show_lines=False)
    table.add_column("")
    for label in labels:
        table.add_column(label, justify="right")
    for key, title in ROWS:
        table.add_row(title, *(_cell(s, key) for s in summaries))
    return table


def runs_table(summaries: Sequence[Summary], labels: Sequence[str]) -> Table:
    """One row per run: the counts that matter, compact enough for many runs."""
    table = Table(title="scalelab suite: measured, one row per run")
    table.add_column("run", max_width=36, overflow="fold")
    for title in ("due", "ok", "lost", "dup", "recov", "doubt", "extra", "claim"):
        table.add_column(title, justify="right")
    for s, label in zip(summaries, labels, strict=True):
        c = s["counts"]
        table.add_row(label, str(s["expected"]), str(c["ok"]), str(c["lost"]),
                      str(c["duplicated"]), str(c["recovered"]), str(c["in_doubt"]),
                      str(s["extra_executions"]), _claim_short(s))
    return table


def _claim_short(summary: Summary) -> str:
    return {"demonstrated": "yes", "not-demonstrated": "NO", "untested": "untested"}[
        findings.demonstration(summary)]


def terminal_table(summaries: Sequence[Summary], table: str = "seed") -> Table:
    """A table for the terminal: each cell its claim and the measurement."""
    spec = TABLES[table]
    out = Table(title=spec.title, show_lines=True)
    out.add_column("Feature")
    for column in spec.columns:
        out.add_column(column, ratio=1)
    for row, cells in measured_cells(summaries, table):
        out.add_row(row, *(f"{_claimed(claim)}\n" + ("\n".join(said) if said else "not measured")
                           for claim, said in cells))
    return out


def summary_table(summary: Summary) -> Table:
    return side_by_side([summary], [variant_label(summary)])


def markdown_counts(summaries: Sequence[Summary], labels: Sequence[str]) -> str:
    head = "| | " + " | ".join(labels) + " |"
    rule = "| --- |" + " ---: |" * len(labels)
    rows = [f"| {title} | " + " | ".join(_cell(s, key) for s in summaries) + " |"
            for key, title in ROWS]
    return "\n".join([head, rule, *rows])


def _md(text: Any) -> str:
    """A value safe inside a Markdown table cell."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def verdict_sentence(summary: Summary) -> str:
    """What happened to the work, then whether the claim was demonstrated: two sentences."""
    return (f"What happened to the work: {findings.work_line(summary)}. "
            f"The claim: {findings.verdict_line(summary)}.")


def _fault_rows(summary: Summary) -> list[str]:
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


def markdown_summary(summary: Summary, timeline: str | None = "timeline.png",
                     stored: Sequence[tuple[str, Mapping[str, Any]]] = ()) -> str:
    """``summary.md``: what ran, with what, which faults, the counts, and the verdict."""
    window = summary.get("window", {})
    lines = [
        f"# {_md(variant_label(summary))}",
        "",
        f"**What happened to the work:** {_md(findings.work_line(summary))}.",
        "",
        f"**The claim:** {_md(findings.verdict_line(summary))}.",
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
    rechecked = (summary.get("rechecked") or {}).get("differences") or []
    if rechecked:
        lines += ["", "## Re-checked", "", "`scalelab report` re-checked this run from "
                  "events.jsonl and found it differed from what was stored:", "",
                  *(f"- {_md(d)}" for d in rechecked)]
    lines += ["", "## Counts", "", markdown_counts([summary], [variant_label(summary)])]
    measured = summary.get("measured") or {}
    if measured:
        lines += ["", "## Measured", "", "| figure | value |", "| --- | --- |"]
        lines += [f"| {_md(k)} | {_md(findings.figure(v))} |" for k, v in measured.items()]
    if timeline:
        lines += ["", "## Timeline", "", f"![timeline of the run]({timeline})"]
    fix = findings.fix_lines(summary, stored)
    if fix:
        lines += ["", "## What removes it", "", *(f"- `{_md(line)}`" if line.startswith("fix")
                                                 else f"- {_md(line)}" for line in fix)]
    return "\n".join(lines) + "\n"


# --- the suite's report.md: the report's tables, measured ----------------------------------


def measured_cells(summaries: Sequence[Summary], table: str = "seed",
                   ) -> list[tuple[str, list[tuple[str, list[str]]]]]:
    """Per row of a table, per column: the claim and what the runs said there.

    The cells come from the experiments' own declarations (``Cell``); this module
    knows no experiment.
    """
    from experiments import catalog

    spec = TABLES[table]
    cells = [(name, c) for name, exp in catalog.CATALOG.items() for c in exp.cells
             if c.table == table]
    return [(row, [(claim, [text for name, c in cells if c.row == row and c.column == column
                            for s in summaries if c.matches(name, s) and (text := c.says(s))])
                   for column, claim in zip(spec.columns, claims, strict=True)])
            for row, claims in spec.claims.items()]


MARKS = {"✅": "yes", "❌": "no"}  # the comparison table's marks, said in words


def _claimed(claim: str) -> str:
    """``advice: no``: a claim in words (a terminal or page without an emoji font shows
    the marks as empty boxes)."""
    if not claim:
        return "no claim"
    return "advice: " + "".join(MARKS.get(ch, ch) for ch in claim)


def measured_table(summaries: Sequence[Summary], table: str = "seed") -> str:
    """A table in Markdown, each cell its claim and what the suite measured."""
    spec = TABLES[table]
    lines = ["| Feature | " + " | ".join(spec.columns) + " |",
             "| --- |" + " --- |" * len(spec.columns)]
    for row, cells in measured_cells(summaries, table):
        lines.append(f"| {row} | " + " | ".join(
            f"{_claimed(claim)}; measured: " + "; ".join(_md(t) for t in said)
            if said else f"{_claimed(claim)}; not measured" for claim, said in cells) + " |")
    return "\n".join(lines)


def tables_measured(summaries: Sequence[Summary]) -> list[str]:
    """The keys of the tables at least one of these runs fills a cell of."""
    return [key for key in TABLES
            if any(said for _, cells in measured_cells(summaries, key) for _, said in cells)]


def suite_markdown(runs: Sequence[tuple[str, Summary, str]], *, seed: int,
                   quick: bool) -> str:
    """``report.md`` of a suite: ``runs`` are (label, summary, run directory relative to it)."""
    summaries = [s for _, s, _ in runs]
    stored = [(where, s) for _, s, where in reversed(runs)]
    held = sum(1 for s in summaries if findings.demonstration(s) == "demonstrated")
    lines = [
        "# scalelab suite: the comparison table, measured",
        "",
        f"{len(runs)} runs (seed {seed}{', quick' if quick else ''}); the claim was "
        f"demonstrated in {held} of them.",
        "",
        "Each cell: the usual advice's claim, then what the runs of this suite measured "
        "(verdict count / units due or acknowledged).",
    ]
    for key in ["seed", *(k for k in tables_measured(summaries) if k != "seed")]:
        spec = TABLES[key]
        lines += ["", f"## {spec.title[:1].upper()}{spec.title[1:]}", ""]
        if spec.note:
            lines += [spec.note[:1].upper() + spec.note[1:] + ".", ""]
        lines.append(measured_table(summaries, key))
    by_experiment: dict[str, list[tuple[str, Summary, str]]] = {}
    for run in runs:
        by_experiment.setdefault(str(run[1]["experiment"]), []).append(run)
    for name, group in by_experiment.items():
        lines += ["", f"## {name}", "",
                  markdown_counts([s for _, s, _ in group], [_md(label) for label, _, _ in group])]
        for label, s, where in group:
            lines += ["", f"### {_md(label)}", "", verdict_sentence(s), ""]
            lines += [f"- {_md(line)}" for line in findings.fix_lines(s, stored)]
            lines += ["", f"[summary]({where}/summary.md) · [events]({where}/events.jsonl)", "",
                      f"![timeline of {_md(label)}]({where}/timeline.png)"]
    return "\n".join(lines) + "\n"
