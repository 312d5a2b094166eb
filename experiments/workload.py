"""The harness's side of the workload: clients that ask for work and record intents.

Each client is a thread pacing its requests on the monotonic clock from the run
start. A request goes to the next ready API replica in turn (as a Service would);
a refused connection moves on to the next one. Only an acknowledgement (202, or a
task id from the broker) is recorded as an ``intent``: work the system accepted.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import httpx

from chaos.platform import Platform
from experiments.model import PublishLoad, RequestLoad, TaskLoad
from services.ledger import Kind, Ledger
from services.probe.background import WORK_HEADER  # a user's endpoint gets the work_id here
from services.settings import LabSettings

HARNESS = "harness"


class _Client(threading.Thread):
    def __init__(self, name: str, rate: float, duration: float) -> None:
        super().__init__(name=name, daemon=True)
        self.rate, self.duration = rate, duration
        self.started = 0.0  # the run's clock (time.monotonic()), set by begin()
        self.sent = 0
        self.acknowledged = 0
        self.failed = 0
        self._stop_event = threading.Event()

    def begin(self, started: float) -> None:
        """Send from the run's start on (the client is made before the clock starts)."""
        self.started = started
        self.start()

    def stop(self) -> None:
        self._stop_event.set()

    def run(self) -> None:
        k = 0
        while not self._stop_event.is_set():
            due = k / self.rate
            if due >= self.duration:
                return
            if self._stop_event.wait(max(0.0, due - (time.monotonic() - self.started))):
                return
            self.send(k)
            k += 1

    def send(self, k: int) -> None:
        raise NotImplementedError


class RequestClient(_Client):
    def __init__(self, platform: Platform, ledger: Ledger, load: RequestLoad, prefix: str,
                 duration: float) -> None:
        super().__init__(f"requests-{prefix}", load.rate, duration)
        self.platform, self.ledger, self.load, self.prefix = platform, ledger, load, prefix
        # A connection per request: behind a Kubernetes Service every instance has the
        # same URL and kube-proxy picks a backend per connection, not per request.
        self._http = httpx.Client(timeout=httpx.Timeout(2.0 + load.seconds
                                                        if load.path == "/block" else 2.0),
                                  limits=httpx.Limits(max_keepalive_connections=0))
        self._next = 0

    def send(self, k: int) -> None:
        work_id = f"{self.prefix}-{k}"
        self.sent += 1
        instances = self.platform.instances("api")
        for attempt in range(max(1, len(instances))):
            if not instances:
                break
            inst = instances[(self._next + attempt) % len(instances)]
            try:
                r = self._request(inst.url, work_id)
            except httpx.HTTPError:
                continue  # a dead replica: the next one, as a load balancer retries
            if r.status_code in (200, 202) or (not self.load.own and r.is_success):
                self._next = (self._next + attempt + 1) % len(instances)
                self.acknowledged += 1
                if self.load.acknowledged:
                    self.ledger.record(Kind.INTENT, work_id, self.load.path.rsplit("/", 1)[-1],
                                       _taker(r, inst.name))
                return
        self.failed += 1

    def _request(self, base: str, work_id: str) -> httpx.Response:
        if self.load.own:
            return self._http.post(f"{base}{self.load.path}",
                                   params={"work_id": work_id, "seconds": self.load.seconds})
        return self._http.request(self.load.method, f"{base}{self.load.path}",
                                  json=self.load.body, headers={WORK_HEADER: work_id})

    def close(self) -> None:
        self._http.close()


def _taker(reply: httpx.Response, asked: str) -> str:
    """The replica that took the request, as its reply names it (behind a Service it
    need not be the one the client picked)."""
    try:
        return str(reply.json().get("instance") or asked)
    except (ValueError, AttributeError):
        return asked


class TaskClient(_Client):
    def __init__(self, ledger: Ledger, settings: LabSettings, load: TaskLoad,
                 duration: float) -> None:
        super().__init__("tasks", load.rate, duration)
        from services.worker.app import make_celery, send_work  # heavy; only when used

        self.ledger, self.load = ledger, load
        self.celery: Any = make_celery(settings)
        self._send_work = send_work

    def send(self, k: int) -> None:
        work_id = f"task-{k}"
        self.sent += 1
        try:
            self._send_work(self.celery, work_id, self.load.seconds, self.load.kill_window)
        except Exception:  # the broker is down: not acknowledged, not a unit of work
            self.failed += 1
            return
        self.acknowledged += 1
        self.ledger.record(Kind.INTENT, work_id, "celery", HARNESS)

    def close(self) -> None:
        self.celery.close()


class PublishClient(_Client):
    """Publishes a user's task by name to the lab's broker (Celery's ``send_task``, its
    default queue): the broker's acknowledgement is the intent, the task id the work_id."""

    def __init__(self, ledger: Ledger, broker_url: str, load: PublishLoad, prefix: str,
                 duration: float) -> None:
        super().__init__(f"publish-{prefix}", load.rate, duration)
        from celery import Celery  # heavy; only when used

        self.ledger, self.load = ledger, load
        self.celery: Any = Celery("scalelab-harness", broker=broker_url, set_as_current=False)

    def send(self, k: int) -> None:
        self.sent += 1
        try:
            sent = self.celery.send_task(self.load.task, args=list(self.load.args),
                                         kwargs=dict(self.load.kwargs))
        except Exception:  # the broker is down: not acknowledged, not a unit of work
            self.failed += 1
            return
        self.acknowledged += 1
        self.ledger.record(Kind.INTENT, str(sent.id), "celery", HARNESS,
                           detail={"task": self.load.task})

    def close(self) -> None:
        self.celery.close()
