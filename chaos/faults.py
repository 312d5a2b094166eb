"""Fault steps: the nemesis's operations, as data.

A step names an action, the component it targets and when it fires: ``at`` seconds
after the run starts, or — ``mid_job`` — at the first ``start`` event in the ledger
after ``at`` from an instance of that component (of ``mechanism``, if given), so a
kill provably lands while work runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Action = Literal["kill", "terminate", "pause", "scale", "rolling-restart", "broker-outage"]
ACTIONS: tuple[str, ...] = ("kill", "terminate", "pause", "scale", "rolling-restart",
                            "broker-outage")


@dataclass(frozen=True)
class FaultStep:
    """One fault. ``duration``: how long a pause or broker outage lasts."""

    action: Action
    component: str = "api"
    at: float = 0.0
    mid_job: bool = False
    mechanism: str = ""  # mid_job: only starts of this mechanism trigger the step
    replicas: int = 0  # scale: the new replica count
    duration: float = 0.0
    grace: float | None = None  # terminate: override the topology's grace period

    def describe(self) -> str:
        when = f"at {self.at:g}s" + (" mid-job" if self.mid_job else "")
        what = {"scale": f"scale {self.component} to {self.replicas}",
                "pause": f"pause {self.component} for {self.duration:g}s",
                "broker-outage": f"broker outage for {self.duration:g}s"}.get(
                    self.action, f"{self.action} {self.component}")
        return f"{what} {when}"
