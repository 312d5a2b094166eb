"""A pytest plugin: keep the probe's check in your own CI.

Installed with the lab (entry point ``pytest11``: ``scalelab``), it offers the fixture
``scalelab_probe``: call it with the options of ``scalelab probe`` and it runs the
probe around your app, returning what it counted::

    def test_no_report_runs_twice(scalelab_probe):
        result = scalelab_probe(asgi="shop.main:app", app_dir="src", replicas=3,
                                env={"SHOP_REPORT_SECONDS": "1"}, duration=10)
        assert result.duplicated == 0, result.by_what

Everything the probe starts is stopped when the call returns (or raises); its run
directory is under the test's ``tmp_path``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest


@dataclass(frozen=True)
class ProbeResult:
    """What a probe counted: the run's summary, and its main figures by name."""

    directory: Path
    summary: Mapping[str, Any]

    @property
    def counts(self) -> dict[str, int]:
        return dict(self.summary["counts"])

    @property
    def duplicated(self) -> int:
        return int(self.summary["counts"]["duplicated"])

    @property
    def lost(self) -> int:
        return int(self.summary["counts"]["lost"])

    @property
    def in_doubt(self) -> int:
        return int(self.summary["counts"]["in_doubt"])

    @property
    def extra_executions(self) -> int:
        return int(self.summary["extra_executions"])

    @property
    def by_what(self) -> dict[str, dict[str, int]]:
        """Verdicts per job, task and function of the app (``"apscheduler report"``)."""
        return dict((self.summary.get("measured") or {}).get("by_what") or {})

    @property
    def valid(self) -> bool:
        """Nothing lost, nothing run twice (and every fault asked for happened)."""
        return bool(self.summary["valid"])

    @property
    def verdict(self) -> str:
        """``demonstrated``, ``not_demonstrated`` or ``untested`` (a fault did not happen)."""
        from experiments.summary import outcome

        return outcome(self.summary)


Probe = Callable[..., ProbeResult]


@pytest.fixture
def scalelab_probe(tmp_path: Path) -> Probe:
    """Run ``scalelab probe`` around your app (keyword arguments as its options)."""

    def probe(*, workload: Path | Mapping[str, Any] | None = None,
              env: Mapping[str, str] | None = None, faults: Sequence[str] = (),
              seed: int = 1, **options: Any) -> ProbeResult:
        from experiments.probe.command import run_probe, values_of

        if isinstance(workload, Mapping):
            path = tmp_path / "scalelab-workload.json"
            path.write_text(json.dumps(workload))
            workload = path
        values = values_of(workload=workload, faults=faults,
                           env=[f"{k}={v}" for k, v in (env or {}).items()], **options)
        run = run_probe(values, seed=seed, results=tmp_path / "scalelab-probe", plot=False)
        return ProbeResult(run.directory, run.summary)

    return probe
