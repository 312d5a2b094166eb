"""FastAPI/Starlette BackgroundTasks, observed, and the ASGI wrapper that serves the app.

``ProbeApp`` wraps the user's ASGI app as uvicorn serves it (the app's code is not
touched): each HTTP request gets a work_id (the harness's ``x-scalelab-work`` header,
else one of the instance's own), and each background task added while it is served
is a unit ``<request>/<function>``. When the response starts with a 2xx status the
client has its acknowledgement: the request's tasks are recorded as intents. The
task's start and finish are recorded around it (``BackgroundTask.__call__``, patched
before the app is imported): a replica killed while the task runs leaves it lost.
Starlette runs a response's background tasks after the response is sent:
https://www.starlette.io/background/

The wrapper also answers ``READY_PATH`` (the platform asks it before sending work)
and announces the instance once the app's lifespan has started.
"""

from __future__ import annotations

import contextvars
import itertools
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any

from services.ledger import Kind
from services.probe.context import Probe, current, new_exec_id

MECHANISM = "backgroundtasks"
WORK_HEADER = "x-scalelab-work"
READY_PATH = "/_scalelab/ready"

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


@dataclass
class _Request:
    work_id: str
    tasks: list[str] = field(default_factory=list)
    acknowledged: bool = False


_request: contextvars.ContextVar[_Request | None] = contextvars.ContextVar(
    "scalelab_request", default=None)


def _name(func: Any) -> str:
    name = getattr(func, "__qualname__", None) or getattr(func, "__name__", None)
    return str(name or type(func).__name__).replace("\t", " ").replace("\n", " ")


def install() -> None:
    """Patch Starlette's BackgroundTask so each one added during a request is a unit."""
    from starlette.background import BackgroundTask

    if getattr(BackgroundTask.__call__, "_scalelab_probe", False):
        return
    init, call = BackgroundTask.__init__, BackgroundTask.__call__

    def __init__(self: Any, func: Any, *args: Any, **kwargs: Any) -> None:
        init(self, func, *args, **kwargs)
        request, probe = _request.get(), current()
        if request is None or probe is None:
            return
        base = f"{request.work_id}/{_name(func)}"
        same = sum(1 for t in request.tasks if t == base or t.startswith(base + "#"))
        self._scalelab_work = base if not same else f"{base}#{same + 1}"
        request.tasks.append(self._scalelab_work)
        if request.acknowledged:  # added after the response started
            probe.record(Kind.INTENT, self._scalelab_work, MECHANISM)

    async def __call__(self: Any) -> None:
        work_id, probe = getattr(self, "_scalelab_work", None), current()
        if work_id is None or probe is None:
            await call(self)
            return
        exec_id = new_exec_id()
        probe.record(Kind.START, work_id, MECHANISM, exec_id=exec_id)
        try:
            await call(self)
        except BaseException as exc:  # cancelled by a shutdown, or raised
            probe.record(Kind.REFUSED, work_id, MECHANISM, exec_id=exec_id,
                         detail={"error": type(exc).__name__})
            raise
        probe.record(Kind.FINISH, work_id, MECHANISM, exec_id=exec_id)

    __call__._scalelab_probe = True  # type: ignore[attr-defined]
    BackgroundTask.__init__ = __init__  # type: ignore[method-assign]
    BackgroundTask.__call__ = __call__  # type: ignore[method-assign]


class ProbeApp:
    """The user's ASGI app, served with the probe around it (see the module docstring)."""

    def __init__(self, app: ASGIApp, probe: Probe) -> None:
        self.app, self.probe = app, probe
        self._serial = itertools.count(1)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(scope, receive, send)
        elif scope["type"] == "http" and scope.get("path") == READY_PATH:
            await _ready(send)
        elif scope["type"] == "http":
            await self._http(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    async def _lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        announced = False

        async def sending(message: Message) -> None:
            nonlocal announced
            if message.get("type") == "lifespan.startup.complete" and not announced:
                announced = True
                self.probe.announce()
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            if not announced:  # an app without lifespan support still serves
                self.probe.announce()

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        given = dict(scope.get("headers") or ()).get(WORK_HEADER.encode(), b"").decode()
        request = _Request(given or f"{self.probe.instance}-req-{next(self._serial)}")
        token = _request.set(request)

        async def sending(message: Message) -> None:
            if (message.get("type") == "http.response.start" and not request.acknowledged
                    and 200 <= int(message.get("status", 500)) < 300):
                request.acknowledged = True
                for work_id in request.tasks:
                    self.probe.record(Kind.INTENT, work_id, MECHANISM)
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            _request.reset(token)


async def _ready(send: Send) -> None:
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"ready"})
