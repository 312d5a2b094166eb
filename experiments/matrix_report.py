"""The fixes matrix as a person reads it: the markdown grid with each cell's claim, the
"what to pick" table, the JSON and the terminal grid, each seed's cells combined."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from experiments.matrix import COLUMNS, ROWS, Cell, Row

_SUMMED = ("due", "ok", "lost", "duplicated", "recovered", "extra_executions", "in_doubt")


def combined(cells: Sequence[Cell]) -> Cell:
    """One (row, column)'s cells, every seed, as one: its counts summed (None if any seed's
    run failed), its reason or error the first one's."""
    first = cells[0]
    out = Cell(first.row, first.column, first.experiment, first.seed, dict(first.values),
               first.reason, run_dir=first.run_dir)
    if first.reason:
        return out
    failed = [c for c in cells if c.counts is None]
    if failed:
        out.error = failed[0].error or "not run"
        return out
    counts: dict[str, Any] = {k: sum(int(c.counts[k]) for c in cells if c.counts)
                              for k in _SUMMED}
    counts["valid"] = all(c.counts and c.counts["valid"] for c in cells)
    counts["fault_errors"] = [e for c in cells if c.counts for e in c.counts["fault_errors"]]
    counts["seeds"] = len(cells)
    out.counts = counts
    return out


def held(row: Row, cell: Cell) -> bool | None:
    """Whether the row's claim held in this cell (None: nothing measured)."""
    if cell.counts is None:
        return None
    dup, lost = cell.counts["duplicated"], cell.counts["lost"]
    return (dup > 0 if row.dup_expected else dup == 0) and not (row.no_loss and lost)


def compact(cell: Cell, short: bool = False) -> str:
    """``dup 3/10 · lost 0``, or the reason there is no count (its first word if short)."""
    if cell.reason:
        return cell.reason.split(":")[0].split(" — ")[0] if short else cell.reason
    if cell.counts is None:
        return f"failed: {cell.error}" if cell.error else "not run"
    c = cell.counts
    return f"dup {c['duplicated']}/{c['due']} · lost {c['lost']}"


def tone(cell: Cell) -> str:
    """``bad`` (work duplicated or lost), ``good`` (neither), ``none`` (no count)."""
    if cell.counts is None:
        return "none"
    return "bad" if cell.counts["duplicated"] or cell.counts["lost"] else "good"


def grid(cells: Sequence[Cell]) -> tuple[list[Row], dict[tuple[str, str], Cell]]:
    """The rows present, and each (row, column) with its seeds combined."""
    keys = {c.row for c in cells}
    rows = [r for r in ROWS if r.key in keys]
    by: dict[tuple[str, str], list[Cell]] = {}
    for c in cells:
        by.setdefault((c.row, c.column), []).append(c)
    return rows, {k: combined(v) for k, v in by.items()}


def _seeds(cells: Sequence[Cell]) -> list[int]:
    return sorted({c.seed for c in cells})


def _cell_text(row: Row, cell: Cell) -> str:
    text = compact(cell)
    verdict = held(row, cell)
    if verdict is not None:
        text += f" — claim {'held' if verdict else 'broken'}"
    if cell.run_dir:
        text = f"[{text}]({cell.run_dir}/summary.md)"
    return text.replace("|", "\\|")


def pick_table(cells: Sequence[Cell]) -> list[str]:
    """What to pick, from the measured cells only: under which faults each row never
    duplicated and never lost a tick, and where it did."""
    rows, at = grid(cells)
    lines = ["## What to pick", "",
             "From the measured cells above (every seed): the faults under which each "
             "mechanism never duplicated and never lost a tick, and those where it did. "
             "Rows with the smallest share of bad cells first; a row measured under few "
             "faults says less.", "",
             "| mechanism | bad / measured | never duplicated, never lost under | "
             "duplicated under | lost under |", "| --- | --- | --- | --- | --- |"]
    scored = []
    for row in rows:
        measured = [(col, c) for col in COLUMNS
                    if (c := at.get((row.key, col.key))) is not None and c.counts is not None]
        if not measured:
            continue
        dup = [col.short for col, c in measured if c.counts and c.counts["duplicated"]]
        lost = [col.short for col, c in measured if c.counts and c.counts["lost"]]
        clean = [col.short for col, c in measured if tone(c) == "good"]
        bad = len(measured) - len(clean)
        scored.append((bad / len(measured), -len(measured), row, bad, len(measured), clean,
                       dup, lost))
    for _, _, row, bad, total, clean, dup, lost in sorted(scored, key=lambda t: t[:2]):
        lines.append(f"| {row.label} | {bad}/{total} | {', '.join(clean) or '—'} | "
                     f"{', '.join(dup) or '—'} | {', '.join(lost) or '—'} |")
    return lines


def markdown(cells: Sequence[Cell], *, quick: bool) -> str:
    rows, at = grid(cells)
    head = ["mechanism", "claim", *(col.label for col in COLUMNS)]
    seeds = _seeds(cells)
    lines = [
        "# The fixes matrix",
        "",
        f"Seeds {', '.join(map(str, seeds))}, {'quick' if quick else 'full'} settings, local "
        "platform. Each cell: ticks duplicated / due and ticks lost, counted from the ledger "
        "and summed over the seeds, then whether the row's claim held there (the claim as "
        "a cell checks it in brackets after the documented one); the link is the first "
        "seed's run directory, with its history and timeline. n/a says why a fault means "
        "nothing for the row.",
        "",
        "| " + " | ".join(head) + " |",
        "| " + " | ".join("---" for _ in head) + " |",
    ]
    for row in rows:
        parts = [row.label, f"{row.claim} [{row.source}] (checked: {row.claim_short})"]
        parts += [_cell_text(row, at[(row.key, col.key)]) for col in COLUMNS]
        lines.append("| " + " | ".join(p.replace("|", "\\|") if not p.startswith("[")
                                        else p for p in parts) + " |")
    lines += ["", "Per cell and seed (due, ok, lost, duplicated, recovered, extra executions):",
              ""]
    labels = {r.key: r.label for r in ROWS}
    columns = {c.key: c.label for c in COLUMNS}
    for cell in cells:
        if cell.counts is None:
            continue
        c = cell.counts
        lines.append(f"- {labels[cell.row]} / {columns[cell.column]} / seed {cell.seed}: due "
                     f"{c['due']}, ok {c['ok']}, lost {c['lost']}, duplicated "
                     f"{c['duplicated']}, recovered {c['recovered']}, extra "
                     f"{c['extra_executions']} — `{cell.run_dir}`"
                     + (f" (fault errors: {'; '.join(c['fault_errors'])})"
                        if c["fault_errors"] else ""))
    lines += ["", *pick_table(cells)]
    return "\n".join(lines) + "\n"


def to_json(cells: Sequence[Cell], *, quick: bool) -> dict[str, Any]:
    rows, _ = grid(cells)
    return {
        "seeds": _seeds(cells),
        "quick": quick,
        "columns": [{"key": c.key, "label": c.label} for c in COLUMNS],
        "rows": [{"key": r.key, "label": r.label, "claim": r.claim, "source": r.source,
                  "checked": r.claim_short, "kind_only": r.kind_only} for r in rows],
        "cells": [c.to_json() for c in cells],
    }


def terminal_grid(cells: Sequence[Cell]) -> Any:
    """The grid as a rich Table: each cell compact (seeds summed), red where work was
    duplicated or lost, green where neither, dim where nothing was measured."""
    from rich.table import Table

    rows, at = grid(cells)
    table = Table(title="the fixes matrix: ticks duplicated/due · lost, from the ledger",
                  caption="APScheduler 4.0.0a6 is a pre-release; matrix.md has each claim")
    table.add_column("mechanism", no_wrap=True)
    for col in COLUMNS:
        table.add_column(col.short)
    style = {"bad": "red", "good": "green", "none": "dim"}
    for row in rows:
        table.add_row(row.key, *(f"[{style[tone(at[(row.key, c.key)])]}]"
                                 f"{compact(at[(row.key, c.key)], short=True)}[/]"
                                 for c in COLUMNS))
    return table


def write(cells: Sequence[Cell], directory: Path, *, quick: bool) -> None:
    (directory / "matrix.md").write_text(markdown(cells, quick=quick), encoding="utf-8")
    (directory / "matrix.json").write_text(
        json.dumps(to_json(cells, quick=quick), indent=2) + "\n", encoding="utf-8")


