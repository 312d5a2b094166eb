"""What a worker or beat process knows about the lab, and its per-process ledger client.

A prefork worker forks its pool children after the app is built, so the ledger client is
created lazily per process (a Redis connection must never be shared across a fork). Each
process also counts, per run, the events it recorded, and reports the counts at shutdown;
the runner checks them against the ledger, an account kept apart from the ledger itself.
"""

from __future__ import annotations

import os
from typing import Any

from services.ledger import Kind, Ledger
from services.settings import LabSettings


class WorkerContext:
    """The settings of this instance, and a ledger client per process that counts its events."""

    def __init__(self, settings: LabSettings) -> None:
        self.settings = settings
        self._ledger: Ledger | None = None
        self._pid = 0

    @property
    def instance(self) -> str:
        return self.settings.instance

    def ledger(self) -> Ledger:
        """This process's ledger client (a forked child gets its own, and fresh counts)."""
        pid = os.getpid()
        if self._ledger is None or self._pid != pid:
            self._ledger = Ledger.from_url(self.settings.ledger_url)
            self._pid = pid
        return self._ledger

    def record(
        self,
        kind: Kind | str,
        work_id: str,
        mechanism: str,
        *,
        attempt: int = 1,
        exec_id: str = "",
        detail: dict[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> str | None:
        """Record one event as this instance; returns the kind recorded, None outside a run.

        The ledger client counts, per run, what it recorded; ``report_counts`` reports it.
        """
        return self.ledger().record(kind, work_id, mechanism, self.instance, attempt=attempt,
                                    exec_id=exec_id, detail=detail,
                                    idempotency_key=idempotency_key)

    def report_counts(self, name: str) -> None:
        """Report, per run, how many events this process recorded (nothing if it recorded none)."""
        if self._ledger is None or self._pid != os.getpid():
            return
        for run, count in self._ledger.recorded.items():
            self._ledger.report_counts(run, name, count)

    def announce(self, component: str, **info: Any) -> None:
        """Tell the harness this instance is ready (the ledger's instances hash)."""
        self.ledger().announce(self.instance, component, **info)
