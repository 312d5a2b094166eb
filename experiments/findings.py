"""How a run is said: what happened to the work, whether the claim was demonstrated, the fix.

Two separate things, said separately wherever a run is shown (terminal, ``summary.md``,
the suite's report, the browser):

- *what happened to the work*: the checker's counts — ok, lost, duplicated, recovered
  (and in doubt, unexpected). Lost and duplicated are always in the warning colour,
  whatever the experiment set out to show: a demonstrated duplication is still
  duplicated work.
- *whether the experiment demonstrated its claim*: demonstrated, not demonstrated, or
  untested (the fault it depends on did not happen).

And, when the work was lost or duplicated, what removes that: the experiment's declared
fix (``Fix``), as a command to run, with a stored run that measured it, when there is one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from experiments.summary import outcome

# What happened to the work, in the order it is said; the warning ones first.
OUTCOMES = ("lost", "duplicated", "recovered", "ok")
WARN = frozenset({"lost", "duplicated"})

# Whether the claim was demonstrated: the key (a CSS class, a filter value) and its words.
DEMONSTRATION = {
    "demonstrated": "demonstrated",
    "not-demonstrated": "not demonstrated",
    "untested": "untested",
}


def demonstration(summary: Mapping[str, Any]) -> str:
    """``demonstrated``, ``not-demonstrated`` or ``untested`` (a CSS class, a filter value):
    the stored verdict (``summary.outcome``: older runs record ``valid`` only)."""
    return outcome(summary).replace("_", "-")


def went_wrong(summary: Mapping[str, Any]) -> bool:
    """Was any work lost or duplicated?"""
    counts = summary.get("counts") or {}
    return any(int(counts.get(v) or 0) for v in WARN)


def outcome_counts(summary: Mapping[str, Any]) -> list[tuple[str, int]]:
    """(outcome, count) as said: what happened first, then lost and duplicated at 0."""
    counts = summary.get("counts") or {}
    said = [v for v in (*OUTCOMES, "in_doubt", "unexpected") if counts.get(v) or v in WARN]
    said.sort(key=lambda v: not counts.get(v))
    return [(v, int(counts.get(v) or 0)) for v in said]


def work_line(summary: Mapping[str, Any]) -> str:
    """``10 units due or acknowledged, 30 executions: 10 duplicated, 0 lost``: the work."""
    due = summary.get("expected", 0)
    parts = [f"{n} {v.replace('_', ' ')}" for v, n in outcome_counts(summary)]
    executions = summary.get("executions")
    ran = f", {executions} executions" if executions is not None else ""
    return f"{due} units due or acknowledged{ran}: " + ", ".join(parts)


def verdict_line(summary: Mapping[str, Any]) -> str:
    """``demonstrated: <the expectation's sentence>``."""
    said = DEMONSTRATION[demonstration(summary)]
    return f"{said}: {summary.get('expectation') or '(no expectation stated)'}"


def figure(value: Any) -> str:
    """A measured figure as a person reads it: 7.9125000000000005 -> 7.913."""
    if isinstance(value, float):
        return f"{value:.3f}".rstrip("0").rstrip(".") if abs(value) < 1e6 else f"{value:.4g}"
    if isinstance(value, list | tuple):
        return ", ".join(figure(v) for v in value)
    if isinstance(value, dict):
        return ", ".join(f"{k}: {figure(v)}" for k, v in value.items())
    return str(value)


def rich_work_line(summary: Mapping[str, Any]) -> str:
    """``work_line`` in Rich markup: lost and duplicated counts above 0 in the warning colour."""
    line = work_line(summary)
    counts = summary.get("counts") or {}
    for v in WARN:
        if counts.get(v):
            line = line.replace(f" {counts[v]} {v}", f" [bold red]{counts[v]} {v}[/]", 1)
    return line


RICH_DEMONSTRATION = {"demonstrated": "green", "not-demonstrated": "bold red",
                      "untested": "yellow"}


def terminal_lines(summary: Mapping[str, Any],
                   stored: Iterable[tuple[str, Mapping[str, Any]]] = ()) -> list[str]:
    """What a run says in the terminal, in Rich markup: its work, its verdict, its fix."""
    state = demonstration(summary)
    lines = [f"work:  {rich_work_line(summary)}",
             f"claim: [{RICH_DEMONSTRATION[state]}]{DEMONSTRATION[state]}[/]: "
             f"{summary.get('expectation') or '(no expectation stated)'}"]
    return lines + [f"[bold]{line}[/]" for line in fix_lines(summary, stored)]


def title_line(summary: Mapping[str, Any]) -> str:
    """One line naming the experiment, its work and its verdict (the PNG's title)."""
    return (f"{summary.get('experiment', 'run')}: {work_line(summary)}\n"
            f"{verdict_line(summary)}")


# --- the fix ----------------------------------------------------------------------------

@dataclass(frozen=True)
class Fix:
    """What removes an experiment's failure: the same run with ``options`` changed.

    ``when``: the parameters of the runs this fix is for (a value, or a test of it);
    ``what``: the fix in a few words; ``experiment``: another experiment that shows it,
    when the fix is another mechanism (else the run's own).
    """

    what: str
    options: Mapping[str, Any]
    when: Mapping[str, Any] = field(default_factory=dict)
    experiment: str = ""

    def applies(self, params: Mapping[str, Any]) -> bool:
        return all(v(params.get(k)) if callable(v) else params.get(k) == v
                   for k, v in self.when.items())


def flag(name: str, value: Any) -> str:
    option = "--" + name.replace("_", "-")
    if isinstance(value, bool):
        return option if value else "--no-" + option[2:]
    return f"{option} {value:g}" if isinstance(value, float) else f"{option} {value}"


def fix_for(summary: Mapping[str, Any], fixes: Sequence[Fix],
            defaults: Mapping[str, Any] | None = None) -> Fix | None:
    """The first declared fix for a run of these parameters, if it lost or duplicated work
    (a parameter the run does not record has its ``defaults`` value)."""
    if not went_wrong(summary):
        return None
    params = {**(defaults or {}), **(summary.get("parameters") or {})}
    return next((f for f in fixes if f.applies(params)), None)


def fix_command(summary: Mapping[str, Any], fix: Fix, defaults: Mapping[str, Any]) -> str:
    """``scalelab run NAME ...``: the run as it was (its non-default options), fixed."""
    name = fix.experiment or str(summary.get("experiment", ""))
    params = dict(summary.get("parameters") or {}) if not fix.experiment else {}
    params.update(fix.options)
    shown = [flag(k, v) for k, v in params.items() if k not in defaults or defaults[k] != v]
    return " ".join(["scalelab run", name, *shown])


Stored = Iterable[tuple[str, Mapping[str, Any]]]  # (where, summary) of stored runs


def fixed_by(fix: Fix, summary: Mapping[str, Any],
             stored: Stored) -> tuple[str, Mapping[str, Any]] | None:
    """The newest stored run (where, summary) that ran the fix and lost and duplicated
    nothing: the fix measured. ``stored``: newest first."""
    name = fix.experiment or str(summary.get("experiment", ""))
    want = {**({} if fix.experiment else dict(summary.get("parameters") or {})),
            **fix.options}
    for where, s in stored:
        params = s.get("parameters") or {}
        if (s.get("experiment") == name and not went_wrong(s)
                and all(params.get(k) == v for k, v in want.items() if k in params)):
            return where, s
    return None


@dataclass(frozen=True)
class Offered:
    """The fix offered beside a run: what it is, the command, and where it was measured."""

    fix: Fix
    command: str
    measured: tuple[str, Mapping[str, Any]] | None  # (where, summary) of a stored run


def offered(summary: Mapping[str, Any], stored: Stored = ()) -> Offered | None:
    """The fix for what this run lost or duplicated, if its experiment declares one."""
    from experiments import catalog

    try:
        spec = catalog.get(str(summary.get("experiment", "")))
    except ValueError:
        return None
    fix = fix_for(summary, catalog.FIXES.get(spec.name, ()), spec.defaults())
    if fix is None:
        return None
    defaults = (catalog.get(fix.experiment) if fix.experiment else spec).defaults()
    return Offered(fix, fix_command(summary, fix, defaults), fixed_by(fix, summary, stored))


def fix_lines(summary: Mapping[str, Any], stored: Stored = ()) -> list[str]:
    """What to run to remove the failure this run shows, and where it was measured."""
    o = offered(summary, stored)
    if o is None:
        return []
    lines = [f"fix ({o.fix.what}): {o.command}"]
    if o.measured is not None:
        where, s = o.measured
        lines.append(f"measured: {where}: {work_line(s)}")
    return lines
