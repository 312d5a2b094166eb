"""The ledger's history, pure: the event model and the one-line codec of the ledger.

What the checker, the run store and the plots import: no Redis here. Each event is
one tab-separated line in the ledger (``t kind work_id mechanism instance pid
attempt exec_id detail run``); ``t`` is the ledger Redis's own clock.
"""

from __future__ import annotations

import json
from enum import StrEnum
from typing import Any, NamedTuple


def scheduled_work_id(job: str, fire_time: float) -> str:
    """The work_id of a scheduled unit: ``<job>@<fire time>``, the same on every replica."""
    return f"{job}@{fire_time:.3f}"


def parse_scheduled(work_id: str) -> tuple[str, float] | None:
    """``(job, fire time)`` of a scheduled work_id, None for any other unit of work."""
    job, sep, when = work_id.rpartition("@")
    if not sep:
        return None
    try:
        return job, float(when)
    except ValueError:
        return None


class Kind(StrEnum):
    INTENT = "intent"
    START = "start"
    FINISH = "finish"
    REFUSED = "refused"
    FAULT = "fault"


_FIELDS = 10  # t, kind, work_id, mechanism, instance, pid, attempt, exec_id, detail, run


_NO_DETAIL: dict[str, Any] = {}


class Event(NamedTuple):
    """One observation. ``t`` is seconds on the ledger Redis's clock.

    A named tuple, not a dataclass: a check reads up to millions of them, and a
    tuple is the cheapest immutable record Python builds. ``detail`` is shared
    when empty; never mutate it.
    """

    t: float
    kind: str
    work_id: str
    mechanism: str
    instance: str
    pid: int = 0
    attempt: int = 1
    exec_id: str = ""
    detail: dict[str, Any] = _NO_DETAIL
    run: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "t": self.t,
            "kind": self.kind,
            "work_id": self.work_id,
            "mechanism": self.mechanism,
            "instance": self.instance,
            "pid": self.pid,
            "attempt": self.attempt,
            "exec_id": self.exec_id,
            "detail": self.detail,
            "run": self.run,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Event:
        return cls(
            t=float(data["t"]),
            kind=str(data["kind"]),
            work_id=str(data["work_id"]),
            mechanism=str(data.get("mechanism", "")),
            instance=str(data.get("instance", "")),
            pid=int(data.get("pid", 0)),
            attempt=int(data.get("attempt", 1)),
            exec_id=str(data.get("exec_id", "")),
            detail=dict(data.get("detail") or {}),
            run=str(data.get("run", "")),
        )


def clean(value: str) -> str:
    if "\t" in value or "\n" in value:
        raise ValueError(f"ledger fields cannot hold tabs or newlines: {value!r}")
    return value


def encode_payload(
    work_id: str,
    mechanism: str,
    instance: str,
    pid: int,
    attempt: int,
    exec_id: str,
    detail: dict[str, Any] | None,
) -> str:
    parts = [clean(work_id), clean(mechanism), clean(instance), str(pid), str(attempt),
             clean(exec_id), json.dumps(detail, separators=(",", ":")) if detail else ""]
    return "\t".join(parts)


def decode_line(line: bytes | str) -> Event:
    text = line.decode() if isinstance(line, bytes) else line
    p = text.split("\t")  # JSON escapes tabs: only separators are raw tabs
    if len(p) != _FIELDS:
        raise ValueError(f"malformed ledger line: {text[:80]!r}")
    return Event(float(p[0]), p[1], p[2], p[3], p[4], int(p[5]), int(p[6]), p[7],
                 json.loads(p[8]) if p[8] else _NO_DETAIL, p[9])
