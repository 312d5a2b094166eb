"""``summary.json``, typed: what the runner writes, the store reads and the report renders.

The four keys every stored run has are required; the rest may be absent from runs
stored by older versions of the lab. Also the small phrases experiments use to say
a run in a table cell (``n``, ``param``).
"""

from __future__ import annotations

from typing import Any, NotRequired, TypedDict


class Window(TypedDict):
    start: float
    end: float
    duration: NotRequired[float]


class JudgeRecord(TypedDict):
    name: str  # module.function of the judge that decided ``valid``
    rule: str  # fingerprint of its source, to notice when today's rule differs


class Summary(TypedDict):
    experiment: str
    parameters: dict[str, Any]
    window: Window
    counts: dict[str, int]
    label: NotRequired[str]  # a suite's name for the run (its variant)
    platform: NotRequired[str]
    seed: NotRequired[int]
    run_id: NotRequired[str]
    schedules: NotRequired[list[dict[str, Any]]]
    late_after: NotRequired[float]
    expected: NotRequired[int]
    executions: NotRequired[int]
    extra_executions: NotRequired[int]
    refused: NotRequired[int]
    ignored: NotRequired[int]
    late: NotRequired[int]
    measured: NotRequired[dict[str, Any]]
    faults: NotRequired[list[dict[str, Any]]]
    mid_job_faults: NotRequired[dict[str, int]]
    fault_errors: NotRequired[list[str]]
    requests: NotRequired[dict[str, int]]
    topology: NotRequired[dict[str, int]]
    executions_by_component: NotRequired[dict[str, int]]
    instance_counts: NotRequired[dict[str, int]]
    ledger_integrity: NotRequired[dict[str, Any]]
    valid: NotRequired[bool]  # the verdict was demonstrated (all older runs record)
    verdict: NotRequired[str]  # demonstrated, not_demonstrated or untested
    expectation: NotRequired[str]
    judge: NotRequired[JudgeRecord]
    rechecked: NotRequired[dict[str, Any]]  # what ``scalelab report`` found had changed
    platform_options: NotRequired[dict[str, Any]]
    as_run: NotRequired[dict[str, Any]]  # where the platform ran the topology otherwise
    versions: NotRequired[dict[str, str]]
    wall_seconds: NotRequired[float]


DEMONSTRATED, NOT_DEMONSTRATED, UNTESTED = "demonstrated", "not_demonstrated", "untested"
OUTCOMES = (DEMONSTRATED, NOT_DEMONSTRATED, UNTESTED)
# The exit code of a run (and of a suite: its worst run), beside 2 for bad input.
EXIT_CODES = {DEMONSTRATED: 0, NOT_DEMONSTRATED: 1, UNTESTED: 3}


def outcome(s: Any) -> str:
    """A stored run's verdict; runs stored before ``untested`` existed record ``valid`` only."""
    stored = s.get("verdict")
    if stored in OUTCOMES:
        return str(stored)
    return DEMONSTRATED if s.get("valid") else NOT_DEMONSTRATED


def outcome_words(s: Any) -> str:
    """``not demonstrated``: the verdict as a person reads it."""
    return outcome(s).replace("_", " ")


def exit_code(summaries: Any) -> int:
    """0 when every run demonstrated its expectation; 1 when one did not; else 3 when
    one is untested (a suite with an untested run does not pass)."""
    found = {outcome(s) for s in summaries}
    if NOT_DEMONSTRATED in found:
        return EXIT_CODES[NOT_DEMONSTRATED]
    return EXIT_CODES[UNTESTED] if UNTESTED in found else EXIT_CODES[DEMONSTRATED]


def param(s: Any, name: str) -> Any:
    """A parameter of the run (None when the run has no such parameter)."""
    return (s.get("parameters") or {}).get(name)


def n(s: Any, verdict: str) -> str:
    """``lost 7/20``: a verdict's count over the units due or acknowledged."""
    return f"{verdict.replace('_', ' ')} {s['counts'].get(verdict, 0)}/{s.get('expected', 0)}"


def some(value: Any) -> bool:
    """A ``where`` test: a positive count."""
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def ran_in(s: Any) -> str:
    """Where the executions ran, by component."""
    by = s.get("executions_by_component") or {}
    return ", ".join(f"{count} executions in {c} processes" for c, count in sorted(by.items()))


def processes(s: Any) -> str:
    """What had to run: the replicas of each component, and Redis."""
    replicas = {c: count for c, count in (s.get("topology") or {}).items() if count}
    return " + ".join(f"{count} {c}" for c, count in replicas.items()) + " + Redis"
