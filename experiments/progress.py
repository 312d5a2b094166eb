"""What the CLI shows while a run runs: phase, time elapsed and remaining, faults fired.

The runner calls a progress hook ``(phase, elapsed, total, faults)``; ``live`` turns
that into one Rich progress line per run. It stays silent when stderr is not a
terminal (CI logs, pipes) or when the caller asked for ``--json``, so machine output
is never interleaved with it.
"""

from __future__ import annotations

from types import TracebackType

from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)


class RunProgress:
    """A progress hook for one run, drawn on ``console``; use as a context manager."""

    def __init__(self, console: Console, label: str) -> None:
        self.label = label
        self.phases: list[str] = []  # every phase shown, in order (tests read it)
        self._progress = Progress(
            SpinnerColumn(),
            TextColumn("[bold]{task.fields[label]}"),
            TextColumn("{task.fields[phase]:<18}"),
            BarColumn(bar_width=28),
            TextColumn("{task.completed:5.1f}/{task.total:g}s"),
            TextColumn("{task.fields[remaining]}"),
            TextColumn("faults fired: {task.fields[faults]}"),
            TimeElapsedColumn(),
            console=console,
            transient=False,
        )
        self._task: TaskID | None = None

    def __call__(self, phase: str, elapsed: float, total: float, faults: int = 0) -> None:
        if self._task is None:
            self._progress.start()
            self._task = self._progress.add_task(self.label, total=total or 1, label=self.label,
                                                 phase=phase, remaining="", faults=faults)
        if not self.phases or self.phases[-1] != phase:
            self.phases.append(phase)
        left = max(0.0, total - elapsed)
        remaining = f"{left:4.1f}s left" if phase == "running" else ""
        self._progress.update(self._task, completed=min(elapsed, total), phase=phase,
                              remaining=remaining, faults=faults)

    def close(self) -> None:
        if self._task is not None:
            self._progress.stop()

    def __enter__(self) -> RunProgress:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


class Silent:
    """The hook when nothing may be drawn."""

    def __call__(self, phase: str, elapsed: float, total: float, faults: int = 0) -> None:
        return None

    def close(self) -> None:
        return None

    def __enter__(self) -> Silent:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        return None


def live(console: Console, label: str, quiet: bool = False) -> RunProgress | Silent:
    """A Rich progress line on a terminal; silence when piped or asked to be quiet."""
    if quiet or not console.is_terminal:
        return Silent()
    return RunProgress(console, label)
