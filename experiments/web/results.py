"""The results directory as the browser reads it: what each directory is, and safe ids.

An id is the path of a directory under the results directory, ``<dir>`` or
``<suite>/<dir>``, each part a plain directory name: no ``..``, no absolute path, no
hidden name, and its real path (symlinks followed) inside the results directory, or it
is not found. Nothing here writes: the browser is read-only.

What a directory is follows the runner's conventions: ``summary.json`` makes a run,
``<name>.partial`` is a run in progress (renamed when complete), ``<name>.failed`` a run
that could not complete, ``<name>.interrupted`` one a signal stopped (its
``interrupted.json`` says which, and in which phase), ``report.md`` (or a ``*-suite``
name) a suite of runs; anything
else is listed as not a run. Stored summaries are cached by file size and mtime, so the
index over many runs reads each ``summary.json`` once.
"""

from __future__ import annotations

import os
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from experiments import live, store
from experiments.findings import DEMONSTRATION, demonstration
from experiments.model import BadInput

PARTIAL, FAILED, INTERRUPTED = ".partial", ".failed", ".interrupted"
REPORT_MD = "report.md"
SUITE_NAME = re.compile(r"-suite(-\d+)?$")
STAMP = re.compile(r"^(\d{8}T\d{6}Z)")
SKIPPED = frozenset({"harness-logs"})  # a suite's harness output, linked from nowhere
_PART = re.compile(r"^[^/\\\x00]+$")


class Kind:
    RUN = "run"
    SUITE = "suite"
    PARTIAL = "partial"
    FAILED = "failed"
    INTERRUPTED = "interrupted"
    OTHER = "other"


# How each state is said, and the CSS class it is coloured with: whether a run
# demonstrated its claim (``experiments.findings``), or why it has no verdict.
VALIDITY = {
    **DEMONSTRATION,
    "could-not-run": "could not run",
    "interrupted": "interrupted",
    "in-progress": "in progress",
    "unreadable": "unreadable",
    "not-a-run": "not a run",
}


@dataclass
class Entry:
    """One directory of the results tree, as the index lists it."""

    id: str
    kind: str
    when: datetime
    summary: dict[str, Any] | None = None
    error: str | None = None
    children: list[Entry] = field(default_factory=list)  # a suite's runs

    @property
    def name(self) -> str:
        return self.id.rpartition("/")[2]

    @property
    def validity(self) -> str:
        if self.kind == Kind.PARTIAL:
            return "in-progress"
        if self.kind == Kind.FAILED:
            return "could-not-run"
        if self.kind == Kind.INTERRUPTED:
            return "interrupted"
        if self.kind == Kind.OTHER:
            return "not-a-run"
        if self.kind == Kind.SUITE:
            if not self.children:
                return "not-a-run"
            states = {c.validity for c in self.children}
            for worst in ("in-progress", "interrupted", "unreadable", "could-not-run",
                          "not-demonstrated", "untested"):
                if worst in states:
                    return worst
            return "demonstrated"
        if self.summary is None:
            return "unreadable"
        return demonstration(self.summary)

    @property
    def experiment(self) -> str:
        if self.summary is not None:
            return str(self.summary.get("experiment", ""))
        return ""


def _when(path: Path) -> datetime:
    m = STAMP.match(path.name)
    if m:  # 20261130T140649Z, sliced: strptime costs a tenth of a second per thousand runs
        s = m.group(1)
        try:
            return datetime(int(s[:4]), int(s[4:6]), int(s[6:8]), int(s[9:11]), int(s[11:13]),
                            int(s[13:15]), tzinfo=UTC)
        except ValueError:
            pass
    try:
        return datetime.fromtimestamp(path.stat().st_mtime, UTC)
    except OSError:
        return datetime.fromtimestamp(0, UTC)


def _stat_key(*paths: Path) -> tuple[tuple[int, int], ...]:
    keys = []
    for p in paths:
        try:
            st = p.stat()
            keys.append((st.st_size, st.st_mtime_ns))
        except OSError:
            keys.append((-1, -1))
    return tuple(keys)


class Results:
    """A results directory, read on each request (runs appear and finish while serving)."""

    # A re-checked run holds its whole history: keep the latest up to this many events.
    EVENTS_KEPT = 2_000_000

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self._summaries: dict[Path, tuple[Any, dict[str, Any] | None, str | None]] = {}
        self._rechecks: OrderedDict[Path, tuple[Any, store.Recheck | BadInput]] = OrderedDict()
        self._lock = threading.Lock()

    # --- ids ------------------------------------------------------------------------------

    def resolve(self, run_id: str, depth: int = 2) -> Path | None:
        """The directory an id names, or None (then: 404)."""
        parts = run_id.split("/")
        if not 1 <= len(parts) <= depth or not all(_plain(p) for p in parts):
            return None
        path = self.root.joinpath(*parts)
        return path if self._inside(path, self.root) and path.is_dir() else None

    def file(self, directory: Path, name: str) -> Path | None:
        """A regular file under a run directory, by its relative path, or None."""
        parts = name.split("/")
        if not 1 <= len(parts) <= 4 or not all(_plain(p) for p in parts):
            return None
        path = directory.joinpath(*parts)
        return path if self._inside(path, directory) and path.is_file() else None

    def id_of(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()

    @staticmethod
    def _inside(path: Path, root: Path) -> bool:
        try:
            real = path.resolve(strict=True)
            return real.is_relative_to(root.resolve(strict=True))
        except (OSError, RuntimeError):
            return False

    # --- the index ------------------------------------------------------------------------

    def entries(self) -> list[Entry]:
        """Every run and suite, newest first; a suite's runs are its children."""
        return self._scan(self.root, "", nested=False)

    def _scan(self, directory: Path, prefix: str, nested: bool) -> list[Entry]:
        out = []
        try:
            children = list(os.scandir(directory))
        except OSError:
            return []
        for d in children:
            if d.name.startswith(".") or (nested and d.name in SKIPPED):
                continue
            path = Path(d.path)
            try:  # a directory entry of a directory inside is inside, unless it is a symlink
                if not d.is_dir() or (d.is_symlink() and not self._inside(path, self.root)):
                    continue
            except OSError:
                continue
            out.append(self.entry(path, prefix + d.name, nested))
        out.sort(key=lambda e: (e.when, e.id), reverse=True)
        return out

    def entry(self, path: Path, run_id: str | None = None, nested: bool = True) -> Entry:
        run_id = run_id or self.id_of(path)
        when = _when(path)
        if path.name.endswith(PARTIAL):
            return Entry(run_id, Kind.PARTIAL, when)
        if path.name.endswith(FAILED):
            return Entry(run_id, Kind.FAILED, when)
        if path.name.endswith(INTERRUPTED):
            return Entry(run_id, Kind.INTERRUPTED, when)
        key = _stat_key(path / store.SUMMARY_JSON)
        if key[0][0] >= 0:
            summary, error = self.summary(path, key)
            return Entry(run_id, Kind.RUN, when, summary, error)
        if not nested and ((path / REPORT_MD).is_file() or SUITE_NAME.search(path.name)):
            return Entry(run_id, Kind.SUITE, when,
                         children=self._scan(path, run_id + "/", nested=True))
        return Entry(run_id, Kind.OTHER, when)

    def summary(self, path: Path, key: Any = None) -> tuple[dict[str, Any] | None, str | None]:
        """The stored summary.json of a run (cached), or the reason it cannot be read."""
        key = key or _stat_key(path / store.SUMMARY_JSON)
        cached = self._summaries.get(path)
        if cached is not None and cached[0] == key:
            return cached[1], cached[2]
        summary: dict[str, Any] | None = None
        try:
            stored = dict(store.read_summary(path))
        except BadInput as exc:
            error: str | None = str(exc)
        else:  # the pages index into these: a run whose shape is wrong is unreadable
            wrong = [k for k in ("parameters", "counts") if not isinstance(stored.get(k), dict)]
            error = (f"{path / store.SUMMARY_JSON}: {' and '.join(map(repr, wrong))} must be "
                     "objects") if wrong else None
            summary = None if wrong else stored
        self._summaries[path] = (key, summary, error)
        return summary, error

    # --- one run, judged again ------------------------------------------------------------

    def recheck(self, path: Path) -> store.Recheck:
        """The run judged again from its files (as ``scalelab report``); raises BadInput."""
        key = _stat_key(path / store.SUMMARY_JSON, path / store.EVENTS)
        with self._lock:
            cached = self._rechecks.get(path)
            if cached is not None and cached[0] == key:
                self._rechecks.move_to_end(path)
                outcome = cached[1]
            else:
                try:
                    outcome = store.recheck(path)
                except BadInput as exc:
                    outcome = exc
                self._rechecks[path] = (key, outcome)
                while len(self._rechecks) > 1 and sum(
                        len(o.events) for _, o in self._rechecks.values()
                        if isinstance(o, store.Recheck)) > self.EVENTS_KEPT:
                    self._rechecks.popitem(last=False)
        if isinstance(outcome, BadInput):
            raise outcome
        return outcome

    def progress(self, run_id: str) -> dict[str, Any] | None:
        """Where a run in progress stands: its state, events so far, and its page once done."""
        path = self.resolve(run_id)
        if path is not None and path.name.endswith(PARTIAL):
            events = path / store.EVENTS
            return {"state": "in-progress", "events_bytes": _stat_key(events)[0][0],
                    "href": None, "status": live.read_progress(path)}
        parts = run_id.split("/")
        if not run_id.endswith(PARTIAL) or not all(_plain(p) for p in parts) or len(parts) > 2:
            return None
        base = run_id[: -len(PARTIAL)]
        for candidate in (base, base + FAILED, base + INTERRUPTED):
            if self.resolve(candidate) is not None:
                return {"state": "done", "events_bytes": None, "href": candidate,
                        "status": None}
        return None

    def logs(self, path: Path) -> list[Path]:
        """The files under a run's ``logs/``, inside the tree only."""
        logs = path / "logs"
        if not self._inside(logs, path):
            return []
        found = []
        for dirpath, dirnames, filenames in os.walk(logs):
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            for name in sorted(filenames):
                p = Path(dirpath, name)
                if not name.startswith(".") and p.is_file() and self._inside(p, path):
                    found.append(p)
        return sorted(found)


def _plain(part: str) -> bool:
    return bool(_PART.match(part)) and part not in (".", "..") and not part.startswith(".")
