"""JUnit XML of runs, for a CI job: one test case per run (or matrix cell).

A run whose claim was demonstrated passes; one not demonstrated fails, its failure
message the expectation's sentence; an untested run (the fault it depends on did not
happen) is skipped, saying why; a run or cell that could not run is an error. Each case's
output says what happened to the work and, when work was lost or duplicated, the fix.
The format is the one JUnit's Ant task writes and CI servers read (``testsuites`` >
``testsuite`` > ``testcase`` with ``failure``, ``error`` or ``skipped``).
"""

from __future__ import annotations

import socket
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from experiments import findings
from experiments.model import BadInput


@dataclass(frozen=True)
class Case:
    """One test case: ``outcome`` is demonstrated, not-demonstrated, untested or error."""

    name: str
    classname: str
    outcome: str
    message: str
    seconds: float = 0.0
    output: str = ""


def of_run(label: str, summary: Mapping[str, Any], where: str = "",
           stored: findings.Stored = ()) -> Case:
    """A stored run as a test case."""
    lines = [f"work: {findings.work_line(summary)}",
             f"claim: {findings.verdict_line(summary)}",
             *findings.fix_lines(summary, stored)]
    if where:
        lines.append(f"stored: {where}")
    return Case(label, f"scalelab.{summary.get('experiment', 'run')}",
                findings.demonstration(summary), str(summary.get("expectation") or ""),
                float(summary.get("wall_seconds") or 0.0), "\n".join(lines))


def error(label: str, classname: str, message: str) -> Case:
    """A run or cell that could not run."""
    return Case(label, classname, "error", message)


def skipped(label: str, classname: str, message: str) -> Case:
    """A cell that does not apply (a fault its platform cannot do)."""
    return Case(label, classname, "untested", message)


def of_matrix(cells: Sequence[Any], directory: Path) -> list[Case]:
    """A matrix's cells as test cases: a cell that ran is judged as its run; a cell with
    no run for a reason (kind only, n/a) is skipped; one that did not run is an error."""
    from experiments import store

    cases = []
    for cell in cells:
        classname = f"scalelab.matrix.{cell.row}"
        if cell.reason:
            cases.append(skipped(cell.label, classname, cell.reason))
        elif cell.counts is None or not cell.run_dir:
            cases.append(error(cell.label, classname, cell.error or "did not run"))
        else:
            run_dir = next((d for d in (directory / cell.run_dir, directory.parent / cell.run_dir)
                            if d.is_dir()), directory / cell.run_dir)
            try:
                summary = store.read_summary(run_dir)
            except BadInput as exc:
                cases.append(error(cell.label, classname, str(exc)))
            else:
                cases.append(of_run(cell.label, summary, str(run_dir)))
    return cases


def document(suite: str, cases: Sequence[Case]) -> ET.ElementTree[ET.Element]:
    def count(outcome: str) -> str:
        return str(sum(1 for c in cases if c.outcome == outcome))

    root = ET.Element("testsuites", name="scalelab", tests=str(len(cases)),
                      failures=count("not-demonstrated"), errors=count("error"),
                      skipped=count("untested"))
    ts = ET.SubElement(root, "testsuite", name=suite, tests=str(len(cases)),
                       failures=count("not-demonstrated"), errors=count("error"),
                       skipped=count("untested"),
                       time=f"{sum(c.seconds for c in cases):.3f}",
                       timestamp=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S"),
                       hostname=socket.gethostname())
    for c in cases:
        tc = ET.SubElement(ts, "testcase", name=c.name, classname=c.classname,
                           time=f"{c.seconds:.3f}")
        if c.outcome == "not-demonstrated":
            ET.SubElement(tc, "failure", message=c.message, type="not demonstrated").text = (
                c.output or c.message)
        elif c.outcome == "error":
            ET.SubElement(tc, "error", message=c.message, type="could not run").text = c.message
        elif c.outcome == "untested":
            ET.SubElement(tc, "skipped", message=c.message or "untested")
        if c.output:
            ET.SubElement(tc, "system-out").text = c.output
    ET.indent(root)
    return ET.ElementTree(root)


def write(path: Path, suite: str, cases: Sequence[Case]) -> None:
    """Write the JUnit XML file; a path that cannot be written is bad input."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        document(suite, cases).write(path, encoding="utf-8", xml_declaration=True)
    except OSError as exc:
        raise BadInput(f"--junit {path}: cannot write ({exc.strerror or exc})") from None


def check_writable(path: Path) -> None:
    """Refuse, before anything runs, a --junit path that cannot be written."""
    if path.is_dir():
        raise BadInput(f"--junit {path}: is a directory; give a file name")
    parent = path.parent if str(path.parent) else Path(".")
    if parent.exists() and not parent.is_dir():
        raise BadInput(f"--junit {path}: {parent} is not a directory")
