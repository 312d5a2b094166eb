"""What the judges state: the number a mechanism's theory gives, and the tolerance allowed.

A judge compares a measured count with ``Expect``: the theory's number, the band it
accepts around it, and why the band is that wide (an edge tick at the window's ends, a
task that starts in the moment between the nemesis counting the work in flight and its
signal landing). The sentence says all three, so a verdict never rests on "> 0".

The fault marks of a run (``Result.marks``) say what the nemesis did: ``struck`` finds
the marks of given actions, ``in_flight`` sums the work each found open on its target.
A judge whose claim needs a fault that struck work in flight says ``untested`` when it
did not (``needs_work_in_flight``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from experiments.checker import Result
from experiments.model import Verdict
from services.history import Event


@dataclass(frozen=True)
class Expect:
    """A count the theory gives, and the band ``[low, high]`` it allows, with why."""

    what: str
    theory: float
    low: float
    high: float
    why: str = ""

    @classmethod
    def exactly(cls, what: str, theory: float) -> Expect:
        return cls(what, theory, theory, theory)

    @classmethod
    def within(cls, what: str, theory: float, below: float, above: float, why: str) -> Expect:
        """The theory's number, allowing ``below`` less and ``above`` more."""
        return cls(what, theory, theory - below, theory + above, why)

    def holds(self, measured: float) -> bool:
        return self.low <= measured <= self.high

    def says(self, measured: float) -> str:
        """``lost 3 (theory 3, allowed 2..4: why)``; ``OUTSIDE`` after the count when it is."""
        outside = "" if self.holds(measured) else " OUTSIDE"
        if self.low == self.high:
            band = f"theory {self.theory:g}"
        else:
            high = "" if self.high == float("inf") else f"{self.high:g}"
            band = f"theory {self.theory:g}, allowed {max(self.low, 0):g}..{high}"
        return (f"{self.what} {measured:g}{outside} "
                f"({band}{': ' + self.why if self.why else ''})")


def judged(head: str, *checks: tuple[Expect, float]) -> Verdict:
    """Demonstrated when every measured count is within its band; the sentence gives each."""
    held = all(expect.holds(measured) for expect, measured in checks)
    return Verdict.of(held, f"{head}: " + "; ".join(expect.says(m) for expect, m in checks))


def struck(r: Result, actions: Iterable[str]) -> list[Event]:
    """The run's fault marks of these actions (``kill``, ``terminate``, ...)."""
    wanted = set(actions)
    return [m for m in r.marks if m.mechanism in wanted]


def in_flight(marks: Iterable[Event]) -> int:
    """The executions the nemesis found open on each target as it struck, summed."""
    return sum(int(m.detail.get("inflight") or 0) for m in marks)


def needs_work_in_flight(r: Result, actions: Iterable[str], wanted: int,
                         claim: str) -> Verdict | None:
    """Untested unless ``wanted`` faults of these actions struck with work in flight."""
    marks = struck(r, actions)
    landed = sum(1 for m in marks if int(m.detail.get("inflight") or 0) > 0)
    if landed >= wanted:
        return None
    return Verdict.untested(
        f"{claim} needs {wanted} fault(s) striking work in flight; "
        f"{len(marks)} struck, {landed} with work in flight")
