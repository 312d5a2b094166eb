"""The run store: one directory per run, written once, readable and re-checkable forever.

A run directory holds:

- ``summary.json``  the contract: what ran (experiment, parameters, seed), the run window,
                    schedules and lateness bound the checker used, counts, faults, verdict;
- ``events.jsonl``  the raw ledger history, one JSON event per line, in commit order;
- ``summary.md``    the same for a person: parameters, faults, counts, one-sentence verdict;
- ``timeline.png``  one lane per instance, one bar per execution (see ``plot``);
- ``logs/``         what the instances printed (the platform writes it).

``recheck`` judges a stored run again from ``events.jsonl`` and the window, schedules
and lateness bound in ``summary.json`` alone: no Redis, no platform. The expectation
is the experiment's judge, applied to the stored parameters; the summary records
which judge (and a fingerprint of its rule) decided, so a re-check says when
today's rule differs.
Anything malformed is a ``BadInput`` naming the file (and line), so the CLI exits 2.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from experiments.checker import (
    Result,
    Schedule,
    check,
    executions_by_component,
    ledger_integrity,
    paused_gc,
)
from experiments.model import BadInput, Experiment, rule_of
from experiments.summary import Summary, outcome
from services.history import Event, Kind

SUMMARY_JSON = "summary.json"
SUMMARY_MD = "summary.md"
EVENTS = "events.jsonl"
TIMELINE = "timeline.png"

_KINDS = frozenset(k.value for k in Kind)
_REQUIRED = ("kind", "work_id", "instance", "t")


# --- events.jsonl -----------------------------------------------------------------------

def write_events(path: Path, events: Iterable[Event]) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for e in events:
            f.write(json.dumps(e.to_json(), separators=(",", ":")) + "\n")


def parse_event(text: str, where: str) -> Event:
    """One line of ``events.jsonl``; ``where`` (``file:line``) prefixes any complaint."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BadInput(f"{where}: not a JSON event, corrupted or truncated "
                       f"({exc.msg}; column {exc.colno})") from None
    if not isinstance(data, dict):
        raise BadInput(f"{where}: expected a JSON object, got {type(data).__name__}")
    missing = [k for k in _REQUIRED if k not in data]
    if missing:
        raise BadInput(f"{where}: event lacks {', '.join(repr(k) for k in missing)}")
    if data["kind"] not in _KINDS:
        raise BadInput(f"{where}: unknown event kind {data['kind']!r} "
                       f"(known: {', '.join(sorted(_KINDS))})")
    t = data["t"]
    if isinstance(t, bool) or not isinstance(t, int | float) or not math.isfinite(t):
        raise BadInput(f"{where}: 't' must be a finite number, not {t!r}")
    if not isinstance(data["work_id"], str) or not isinstance(data["instance"], str):
        raise BadInput(f"{where}: 'work_id' and 'instance' must be strings")
    if not isinstance(data.get("detail") or {}, dict):
        raise BadInput(f"{where}: 'detail' must be an object")
    try:
        return Event.from_json(data)
    except (TypeError, ValueError) as exc:
        raise BadInput(f"{where}: malformed event ({exc})") from None


def read_events(path: Path) -> list[Event]:
    """Every event of ``events.jsonl``; blank lines are skipped, anything else must parse."""
    events: list[Event] = []
    try:
        with paused_gc(), open(path, "rb") as f:  # bytes: a bad line is named by its number
            for number, raw in enumerate(f, start=1):
                try:
                    text = raw.decode("utf-8")
                except UnicodeDecodeError:
                    raise BadInput(f"{path}:{number}: not UTF-8 text, corrupted") from None
                if text.strip():
                    events.append(parse_event(text, f"{path}:{number}"))
    except FileNotFoundError:
        raise BadInput(f"{path}: missing; not a complete run directory") from None
    except OSError as exc:
        raise BadInput(f"{path}: cannot read ({exc.strerror or exc})") from None
    return events


# --- summary.json -----------------------------------------------------------------------

def read_summary(directory: Path) -> Summary:
    path = directory / SUMMARY_JSON
    if not directory.is_dir():
        raise BadInput(f"{directory}: no such run directory")
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BadInput(f"{directory}: not a run directory (no {SUMMARY_JSON})") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInput(f"{path}: cannot read ({exc})") from None
    try:
        summary = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BadInput(f"{path}:{exc.lineno}: not valid JSON, corrupted or truncated "
                       f"({exc.msg})") from None
    if not isinstance(summary, dict):
        raise BadInput(f"{path}: expected a JSON object")
    for key in ("experiment", "parameters", "window", "counts"):
        if key not in summary:
            raise BadInput(f"{path}: lacks {key!r}")
    window = summary["window"]
    if not (isinstance(window, dict) and all(isinstance(window.get(k), int | float)
                                              for k in ("start", "end"))):
        raise BadInput(f"{path}: 'window' needs numeric 'start' and 'end'")
    return summary  # type: ignore[return-value]


def schedules_to_json(schedules: Sequence[Schedule]) -> list[dict[str, Any]]:
    return [{"job": s.job, "interval": s.interval, "epoch": s.epoch, "aligned": s.aligned}
            for s in schedules]


def schedules_from_json(raw: Any, where: Path,
                        fallback: Sequence[Schedule] = ()) -> tuple[Schedule, ...]:
    """The stored schedules; ``aligned``, absent from older summaries, comes from ``fallback``."""
    if not isinstance(raw, list):
        raise BadInput(f"{where}: 'schedules' must be a list")
    known = {s.job: s for s in fallback}
    out = []
    for entry in raw:
        try:
            job = str(entry["job"])
            aligned = entry.get("aligned", known[job].aligned if job in known else True)
            out.append(Schedule(job, float(entry["interval"]),
                                float(entry.get("epoch", Schedule.epoch)), bool(aligned)))
        except (KeyError, TypeError, ValueError, AttributeError):
            raise BadInput(f"{where}: malformed schedule {entry!r}") from None
    return tuple(out)


# --- writing a run ----------------------------------------------------------------------

def write_readables(directory: Path, summary: Summary, events: Sequence[Event],
                    result: Result, *, plot: bool = True) -> None:
    """``summary.md`` and ``timeline.png``: what a person reads, made from the record."""
    from experiments.findings import went_wrong
    from experiments.report import markdown_summary

    near = stored_near(directory) if went_wrong(summary) else []
    (directory / SUMMARY_MD).write_text(markdown_summary(summary, TIMELINE, near),
                                        encoding="utf-8")
    if plot:
        write_timeline(directory, summary, events, result)


def stored_near(directory: Path, most: int = 200) -> list[tuple[str, Summary]]:
    """The runs stored beside ``directory`` (``../name``, summary), newest first: where a
    fix may have been measured. At most ``most`` directories are read."""
    try:
        names = sorted((d.name for d in directory.parent.iterdir()
                        if d.name != directory.name and (d / SUMMARY_JSON).is_file()),
                       reverse=True)[:most]
    except OSError:
        return []
    found = []
    for name in names:
        try:
            found.append((f"../{name}", read_summary(directory.parent / name)))
        except BadInput:
            continue
    return found


def write_timeline(directory: Path, summary: Summary, events: Sequence[Event],
                   result: Result) -> None:
    """``timeline.png`` (matplotlib: a second of imports, the first time)."""
    from experiments.plot import save_timeline, timeline

    save_timeline(timeline(summary, events, result), directory / TIMELINE)


def draw_timeline(directory: Path) -> None:
    """``timeline.png`` of a stored run, from its record."""
    summary = read_summary(directory)
    events = read_events(directory / EVENTS)
    write_timeline(directory, summary, events, check(events))


def write_run(directory: Path, summary: Summary, events: Sequence[Event],
              result: Result, *, plot: bool = True) -> None:
    """Store a run: the record first (events, summary.json), then what is made from it
    (``plot=False``: all but the timeline, which whoever asked draws later)."""
    directory.mkdir(parents=True, exist_ok=True)
    write_events(directory / EVENTS, events)
    (directory / SUMMARY_JSON).write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    write_readables(directory, summary, events, result, plot=plot)


# --- re-checking ------------------------------------------------------------------------

COMPARED = ("expected", "executions", "extra_executions", "refused", "ignored", "late")


@dataclass
class Recheck:
    """A stored run judged again: the summary as re-checked, and where it differs."""

    directory: Path
    summary: Summary
    result: Result
    events: list[Event]
    differences: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # how the rule compares with the run's


def rebuild(summary: Summary, where: Path) -> Experiment:
    """The experiment a summary describes, from its stored parameters."""
    from experiments import catalog

    spec = catalog.get(str(summary["experiment"]))
    params = summary["parameters"]
    if not isinstance(params, dict):
        raise BadInput(f"{where}: 'parameters' must be an object")
    known = {p.name for p in spec.all_params}
    try:
        return spec.experiment(spec.values({k: v for k, v in params.items() if k in known}))
    except BadInput as exc:
        raise BadInput(f"{where}: stored parameters no longer build: {exc}") from None


def rule_notes(stored: Summary, experiment: Experiment) -> list[str]:
    """Whether today's judge is the rule the run was judged by, said in one line each."""
    if experiment.judge is None:
        return []
    today = rule_of(experiment.judge)
    then = stored.get("judge")
    if then is None:
        return [f"the run does not record its judge (stored by an older lab): re-checked "
                f"with today's {today['name']} (rule {today['rule']})"]
    if then.get("name") != today["name"] or then.get("rule") != today["rule"]:
        return [f"the run was judged by {then.get('name')} (rule {then.get('rule')}); "
                f"today's rule differs: re-checked with {today['name']} "
                f"(rule {today['rule']})"]
    return []


def write_recheck(r: Recheck, *, plot: bool = True) -> None:
    """Store what the re-check says: ``summary.json`` and ``summary.md`` both (never one
    without the other, so the directory never contradicts itself). Where it differs
    from what was stored, ``summary.json`` keeps the differences under ``rechecked``."""
    summary = r.summary
    if r.differences:
        summary = {**summary, "rechecked": {"differences": list(r.differences)}}
        r.summary = summary
    (r.directory / SUMMARY_JSON).write_text(json.dumps(summary, indent=2) + "\n",
                                            encoding="utf-8")
    write_readables(r.directory, summary, r.events, r.result, plot=plot)


def recheck(directory: Path) -> Recheck:
    """Judge a stored run again from its files alone."""
    stored = read_summary(directory)
    where = directory / SUMMARY_JSON
    experiment = rebuild(stored, where)
    events = read_events(directory / EVENTS)
    schedules = schedules_from_json(stored.get("schedules", []), where, experiment.schedules)
    window = (float(stored["window"]["start"]), float(stored["window"]["end"]))
    late_after = float(stored.get("late_after", experiment.late_after))
    result = check(events, window, schedules, late_after)
    integrity = stored.get("ledger_integrity", {})
    if "instance_counts" in stored:  # today's rule, on what the instances reported
        integrity = ledger_integrity(events, dict(stored["instance_counts"]))
    verdict = experiment.verdict(result, integrity, stored.get("fault_errors") or ())
    summary: Summary = {**stored, **result.to_json(),  # type: ignore[typeddict-item]
                        "measured": experiment.figures(events, result),
                        "ledger_integrity": integrity,
                        "executions_by_component": executions_by_component(events, result),
                        "verdict": verdict.outcome, "valid": verdict.demonstrated,
                        "expectation": verdict.sentence}
    differences = [f"{k}: stored {stored['counts'].get(k)}, re-checked {v}"
                   for k, v in result.counts.items() if stored["counts"].get(k) != v]
    before, after = dict(stored), dict(summary)
    differences += [f"{k}: stored {before[k]}, re-checked {after.get(k)}"
                    for k in COMPARED if k in before and before[k] != after.get(k)]
    if outcome(before) != outcome(after):
        differences.append(f"verdict: stored {outcome(before).replace('_', ' ')}, "
                           f"re-checked {outcome(after).replace('_', ' ')}")
    if experiment.judge is not None:
        summary["judge"] = rule_of(experiment.judge)
    return Recheck(directory, summary, result, events, differences,
                   rule_notes(stored, experiment))
