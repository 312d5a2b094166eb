"""The probe inside one instance: its name, its ledger client, and how it records.

Set up from the environment the platform gives every instance (``SCALELAB_PROBE``,
``SCALELAB_INSTANCE``, ``SCALELAB_LEDGER_URL``). A recording that fails (the ledger
unreachable) is said on stderr and never raised into the user's code: the probe
observes, it must not change what the app does.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import sys
import threading
import uuid
from dataclasses import dataclass, field
from typing import Any

import redis

from services.ledger import Kind, Ledger

PROBE = "SCALELAB_PROBE"  # set on every instance a probe starts


@dataclass
class Probe:
    """One instance's probe: what it records goes to the ledger under ``instance``."""

    instance: str
    ledger: Ledger
    component: str
    jobs: dict[str, dict[str, Any]] = field(default_factory=dict)  # scheduler jobs seen

    def record(self, kind: Kind | str, work_id: str, mechanism: str, *, exec_id: str = "",
               attempt: int = 1, detail: dict[str, Any] | None = None) -> None:
        try:
            self.ledger.record(kind, work_id, mechanism, self.instance, exec_id=exec_id,
                               attempt=attempt, detail=detail)
        except (redis.RedisError, ValueError) as exc:
            sys.stderr.write(f"scalelab probe: {kind} {work_id!r} not recorded: {exc}\n")

    def announce(self, **info: Any) -> None:
        """Say the instance is up, with the scheduler jobs it knows (the harness expands
        their triggers into what was due)."""
        try:
            self.ledger.announce(self.instance, self.component, jobs=list(self.jobs.values()),
                                 **info)
        except redis.RedisError as exc:
            sys.stderr.write(f"scalelab probe: not announced: {exc}\n")


_current: Probe | None = None
_lock = threading.Lock()


def current() -> Probe | None:
    """This process's probe, None when the process does not run under one."""
    global _current
    if _current is None and os.environ.get(PROBE):
        with _lock:
            if _current is None:
                # On Kubernetes HOSTNAME is the pod's name, which is what a fault targets.
                instance = (os.environ.get("SCALELAB_INSTANCE") or os.environ.get("HOSTNAME")
                            or socket.gethostname())
                _current = Probe(instance,
                                 Ledger.from_url(os.environ["SCALELAB_LEDGER_URL"]),
                                 os.environ.get("SCALELAB_COMPONENT", "api"))
    return _current


def new_exec_id() -> str:
    return uuid.uuid4().hex[:12]


def arguments_hash(*values: Any) -> str:
    """A short hash of a call's arguments: equal arguments, equal hash, across processes."""
    text = json.dumps(values, sort_keys=True, default=repr, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:12]
