"""What a person reads: result tables for the terminal and Markdown for the run store."""

from __future__ import annotations

from collections.abc import Sequence
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


def summary_table(summary: dict[str, Any]) -> Table:
    return side_by_side([summary], [variant_label(summary)])


def markdown_counts(summaries: Sequence[dict[str, Any]], labels: Sequence[str]) -> str:
    head = "| | " + " | ".join(labels) + " |"
    rule = "| --- |" + " ---: |" * len(labels)
    rows = [f"| {title} | " + " | ".join(_cell(s, key) for s in summaries) + " |"
            for key, title in ROWS]
    return "\n".join([head, rule, *rows])
