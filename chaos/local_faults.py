"""The local platform's per-instance network and clock: partitions, clock skew, pool children.

Both are opt-in per lab, by the topology's settings, so a lab that uses neither runs
exactly as before:

- ``partitionable``: every instance reaches the broker through its own loopback
  ``BrokerProxy`` (``chaos.proxy``); ``partition`` cuts one instance off the broker,
  ``heal`` restores it. The ledger is never proxied.
- ``skewable``: every instance runs with libfaketime preloaded, reading its clock offset
  from its own file (``FAKETIME_TIMESTAMP_FILE``, re-read every second), which starts at
  ``+0``; ``skew`` writes an offset there, so that instance's wall clock jumps, as on a
  host whose clock was stepped. The ledger's timestamps (its Redis's ``TIME``) never move.

``pool_children`` names the processes a Celery worker forked for its pool, for a fault
that kills one of them (the OOM killer's choice) rather than the whole instance.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from chaos.platform import PlatformError
from chaos.proxy import BrokerProxy, ProxyLoop
from chaos.skew import check_skew, faketime_library, faketime_offset

PARTITIONABLE = "partitionable"  # topology setting: proxy every instance's broker traffic
SKEWABLE = "skewable"  # topology setting: every instance's clock can be skewed
_REREAD_SECONDS = "1"  # how often a skewable instance re-reads its offset file


class InstanceFaults:
    """Per-instance proxies and clock files of one local lab."""

    def __init__(self, workdir: Path, settings: Mapping[str, Any],
                 broker_address: Callable[[], tuple[str, int]]) -> None:
        self.workdir = workdir
        self.broker_address = broker_address
        self.partitionable = bool(settings.get(PARTITIONABLE))
        self.skewable = bool(settings.get(SKEWABLE))
        self._library = faketime_library() if self.skewable else ""
        self._loop: ProxyLoop | None = ProxyLoop() if self.partitionable else None
        self._proxies: dict[str, BrokerProxy] = {}
        self.skews: dict[str, float] = {}  # instance -> seconds it was last skewed by

    def environment(self, name: str) -> dict[str, str]:
        """What instance ``name`` is started with on top of the lab's environment."""
        env: dict[str, str] = {}
        if self._loop is not None:
            proxy = self._proxies.get(name)
            if proxy is None:
                proxy = self._proxies[name] = BrokerProxy(name, self.broker_address,
                                                          self._loop)
                proxy.start()
            env["SCALELAB_BROKER_URL"] = proxy.url
        if self.skewable:
            clock = self._clock_file(name)
            clock.write_text(faketime_offset(self.skews.get(name, 0.0)) + "\n")
            inherited = os.environ.get("LD_PRELOAD", "")
            env.update({
                "LD_PRELOAD": self._library + (f":{inherited}" if inherited else ""),
                "FAKETIME_TIMESTAMP_FILE": str(clock),
                "FAKETIME_CACHE_DURATION": _REREAD_SECONDS,
                "FAKETIME_DONT_FAKE_MONOTONIC": "1",
                "DONT_FAKE_MONOTONIC": "1",
                "FAKETIME_DONT_RESET": "1",
        "NO_FAKE_STAT": "1",  # file times stay real (and start-up's many stat calls fast)
            })
        return env

    def partition(self, name: str) -> None:
        self._proxy(name).cut()

    def heal(self, name: str) -> None:
        self._proxy(name).restore()

    def skew(self, name: str, seconds: float) -> None:
        if not self.skewable:
            raise PlatformError("this lab was not started skewable (topology setting "
                                f"{SKEWABLE!r}): no instance's clock can be skewed")
        check_skew(seconds)
        clock = self._clock_file(name)
        if not clock.exists():
            raise PlatformError(f"no such instance: {name}")
        # Written whole, then renamed: the instance never reads half an offset.
        partial = clock.with_suffix(".partial")
        partial.write_text(faketime_offset(seconds) + "\n")
        partial.replace(clock)
        self.skews[name] = seconds

    def close(self) -> None:
        if self._loop is not None:
            self._loop.close()
            self._loop = None

    def _proxy(self, name: str) -> BrokerProxy:
        if self._loop is None:
            raise PlatformError("this lab was not started partitionable (topology setting "
                                f"{PARTITIONABLE!r}): no instance can be cut off the broker")
        try:
            return self._proxies[name]
        except KeyError:
            raise PlatformError(f"no such instance: {name}") from None

    def _clock_file(self, name: str) -> Path:
        return self.workdir / f"{name}.faketime"


def _cmdline(pid: int) -> bytes:
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        return f.read()


def pool_children(pid: int) -> list[int]:
    """The pool processes of a prefork worker ``pid``: its forked children (same command
    line, unlike a child it started with another command), lowest pid first."""
    found: list[int] = []
    with contextlib.suppress(OSError):
        parent = _cmdline(pid)
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                for child in (int(p) for p in f.read().split()):
                    with contextlib.suppress(OSError):
                        if _cmdline(child) == parent:
                            found.append(child)
    return sorted(found)
