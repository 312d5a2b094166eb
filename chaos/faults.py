"""Fault steps: the nemesis's operations, as data.

A step names an action, the component it targets and when it fires: ``at`` seconds
after the run starts, or — ``on="start"``, *mid-job* — at the first ``start`` event
in the ledger after ``at`` from an instance of that component (of ``mechanism``, if
given), so a kill provably lands while work runs. ``on="finish"`` strikes right
after an effect, before the work is acknowledged.
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
    on: Literal["", "start", "finish"] = ""  # ledger event that triggers it ("" = timed)
    mechanism: str = ""  # only events of this mechanism trigger the step
    replicas: int = 0  # scale: the new replica count
    duration: float = 0.0
    grace: float | None = None  # terminate: override the topology's grace period

    @property
    def mid_job(self) -> bool:
        """Triggered by a ``start`` of its target: work is provably running there."""
        return self.on == "start"

    def describe(self) -> str:
        when = f"at {self.at:g}s" + {"start": " mid-job", "finish": " after an effect"}.get(
            self.on, "")
        what = {"scale": f"scale {self.component} to {self.replicas}",
                "pause": f"pause {self.component} for {self.duration:g}s",
                "broker-outage": f"broker outage for {self.duration:g}s"}.get(
                    self.action, f"{self.action} {self.component}")
        return f"{what} {when}"
