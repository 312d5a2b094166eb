"""An HTTP middleware in front of the API's routes, as many applications have one.

``base-http`` wraps every request in Starlette's ``BaseHTTPMiddleware`` doing nothing but
``call_next``: the common shape of a logging or timing middleware. Under it, a client that
disconnected early used to cancel the response's BackgroundTasks (starlette #1438,
fastapi #5606); the ``disconnect-cancel`` experiment measures what the installed versions
do.
"""

from __future__ import annotations

from fastapi import FastAPI, Request, Response
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint

from services.settings import LabSettings


class Passthrough(BaseHTTPMiddleware):
    """Hands every request on unchanged."""

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        return await call_next(request)


def add_middleware(app: FastAPI, settings: LabSettings) -> None:
    """Put the configured middleware, if any, in front of the routes."""
    if settings.api_middleware == "base-http":
        app.add_middleware(Passthrough)
