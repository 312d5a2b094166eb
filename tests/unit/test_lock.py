"""The lock matches pyproject.toml: every declared dependency, of the lab and of every
extra, is pinned in requirements.lock at a version the declaration allows.

A dependency added to pyproject.toml without ``make`` (which updates the lock when
pyproject.toml is newer) fails here, naming it.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]


def declared() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    lines = list(project.get("dependencies", []))
    for extra in project.get("optional-dependencies", {}).values():
        lines += extra
    return [Requirement(line) for line in lines]


def pins(text: str) -> dict[str, list[tuple[Version, Marker | None]]]:
    """``name -> [(version, marker)]`` of a ``uv pip compile`` output."""
    found: dict[str, list[tuple[Version, Marker | None]]] = {}
    for raw in text.splitlines():
        if not raw or raw[0] in "# " or raw.startswith("-"):
            continue
        spec, _, marker = raw.partition(" ; ")
        name, sep, version = spec.partition("==")
        assert sep, f"not a pin: {raw!r}"
        found.setdefault(canonicalize_name(name), []).append(
            (Version(version.strip()), Marker(marker) if marker else None))
    return found


def applicable(marker: Marker | None) -> bool:
    return marker is None or marker.evaluate({"extra": ""})


def test_every_declared_dependency_is_pinned_at_an_allowed_version() -> None:
    locked = pins((ROOT / "requirements.lock").read_text())
    problems = []
    for req in declared():
        if not applicable(req.marker):
            continue
        here = [v for v, m in locked.get(canonicalize_name(req.name), []) if applicable(m)]
        if len(here) != 1:
            problems.append(f"{req}: {len(here)} pins in requirements.lock for this Python")
        elif not req.specifier.contains(here[0], prereleases=True):
            problems.append(f"{req}: locked at {here[0]}")
    assert not problems, "requirements.lock is stale (run make): " + "; ".join(problems)


def test_the_pins_parser_reads_markers_and_rejects_ranges() -> None:
    locked = pins("a==1.0\n    # via x\n"
                  "b==2.0 ; python_full_version < '3.0'\n"
                  "b==3.0 ; python_full_version >= '3.0'\n")
    assert [v for v, m in locked["b"] if applicable(m)] == [Version("3.0")]
    with pytest.raises(AssertionError, match="not a pin"):
        pins("c>=1\n")
