"""Loading the user's app inside an instance: its directory, its environment, its objects.

What the platform passes (as ``SCALELAB_*`` variables, like every setting): the app's
directory (put first on ``sys.path``), its extra environment (JSON; ``{broker}`` in a
value is the lab's broker URL; a ``PYTHONPATH`` goes on ``sys.path`` after the
directory), and the import paths ``module:attribute`` of the ASGI app and the Celery
app. A Celery app's broker (and a configured result backend) is pointed at the lab's
broker, so the user's tasks travel where faults can reach.
"""

from __future__ import annotations

import importlib
import inspect
import json
import os
import sys
from typing import Any

APP_DIR = "SCALELAB_PROBE_APP_DIR"
APP_ENV = "SCALELAB_PROBE_ENV"
ASGI = "SCALELAB_PROBE_ASGI"
CELERY = "SCALELAB_PROBE_CELERY"


class NotLoadable(Exception):
    """The import path does not give what the probe needs (one line says why)."""


def prepare() -> None:
    """The app's directory on ``sys.path`` and its environment set, before any import."""
    app_dir = os.environ.get(APP_DIR)
    if app_dir and app_dir not in sys.path:
        sys.path.insert(0, app_dir)
    broker = os.environ.get("SCALELAB_BROKER_URL", "")
    for name, value in json.loads(os.environ.get(APP_ENV) or "{}").items():
        os.environ[str(name)] = str(value).replace("{broker}", broker)
        if name == "PYTHONPATH":  # read by the interpreter at start: put on sys.path here
            sys.path[1:1] = [p for p in str(value).split(os.pathsep) if p]


def load(path: str) -> Any:
    """The object at ``module:attribute`` (attributes may be dotted)."""
    module_name, sep, attribute = path.partition(":")
    if not sep or not module_name or not attribute:
        raise NotLoadable(f"{path!r} is not an import path of the form module:attribute")
    try:
        obj: Any = importlib.import_module(module_name)
    except Exception as exc:  # the user's module: any error it raises while importing
        raise NotLoadable(f"{path!r} does not import: {type(exc).__name__}: {exc}") from None
    for part in attribute.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise NotLoadable(f"{path!r}: module {module_name!r} has no {attribute!r}") from None
    return obj


def load_asgi(path: str) -> Any:
    app = load(path)
    call = app if inspect.isfunction(app) else getattr(app, "__call__", None)  # noqa: B004
    if (not callable(app) or call is None or not inspect.iscoroutinefunction(call)
            or len(inspect.signature(call).parameters) != 3):
        raise NotLoadable(f"{path!r} is not an ASGI app (an async callable of scope, "
                          f"receive, send); it is {type(app).__name__}")
    return app


def load_celery(path: str) -> Any:
    from celery import Celery

    app = load(path)
    if not isinstance(app, Celery):
        raise NotLoadable(f"{path!r} is not a Celery app object; it is {type(app).__name__}")
    broker = os.environ.get("SCALELAB_BROKER_URL")
    if broker:
        app.conf.broker_url = broker
        if app.conf.result_backend:
            app.conf.result_backend = broker
    return app
