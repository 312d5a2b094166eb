"""The probe's workload file: the user's endpoints (method, path, body, rate) and tasks
(name, arguments, rate).

YAML (or JSON, which is YAML)::

    requests:
      - method: POST
        path: /orders
        body: {"item": "book"}
        rate: 2          # requests per second
    tasks:
      - task: shop.send_confirmation   # the task's registered name
        args: ["o-1"]
        rate: 1

Each request carries its work_id in a header; the work it starts inside the app
(background tasks, Celery tasks) is counted there. Each task is published by the
harness to the lab's broker (its default queue) and counted by its task id. The file's
content, not its path, is kept with the run, so a stored run is re-checked without it.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import yaml

from experiments.model import BadInput, PublishLoad, RequestLoad

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
_KEYS = {"method", "path", "body", "rate"}
_TASK_KEYS = {"task", "args", "kwargs", "rate"}
MAX_RATE = 200.0


def read(path: Path) -> str:
    """The workload file as canonical JSON (what the run keeps); bad input says why."""
    try:
        raw = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise BadInput(f"workload file {str(path)!r}: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise BadInput(f"workload file {str(path)!r} is not YAML or JSON{where}") from None
    text = json.dumps(raw)
    loads(text, str(path))  # checked now, before anything starts
    publishes(text, str(path))
    return json.dumps(raw, sort_keys=True, separators=(",", ":"))


def _document(text: str, where: str) -> dict[str, Any]:
    raw: Any = json.loads(text) if text else {}
    if not isinstance(raw, dict) or set(raw) - {"requests", "tasks"}:
        raise BadInput(f"{where}: expected a mapping of 'requests' and/or 'tasks'")
    for key in ("requests", "tasks"):
        if not isinstance(raw.get(key) or [], list):
            raise BadInput(f"{where}: '{key}' must be a list")
    return raw


def loads(text: str, where: str = "workload") -> tuple[RequestLoad, ...]:
    """The request loads a workload (canonical JSON) describes."""
    entries = _document(text, where).get("requests") or []
    return tuple(_load(entry, f"{where}: request {i + 1}") for i, entry in enumerate(entries))


def publishes(text: str, where: str = "workload") -> tuple[PublishLoad, ...]:
    """The tasks a workload (canonical JSON) has the harness publish."""
    entries = _document(text, where).get("tasks") or []
    return tuple(_publish(entry, f"{where}: task {i + 1}") for i, entry in enumerate(entries))


def _rate(entry: dict[str, Any], where: str) -> float:
    rate = entry.get("rate", 1.0)
    if (isinstance(rate, bool) or not isinstance(rate, int | float) or not math.isfinite(rate)
            or not 0 < rate <= MAX_RATE):
        raise BadInput(f"{where}: rate must be a number per second in (0, {MAX_RATE:g}], "
                       f"not {rate!r}")
    return float(rate)


def _publish(entry: Any, where: str) -> PublishLoad:
    if not isinstance(entry, dict):
        raise BadInput(f"{where} must be a mapping of task, args, kwargs, rate")
    unknown = set(entry) - _TASK_KEYS
    if unknown:
        raise BadInput(f"{where}: unknown key {sorted(unknown)[0]!r} "
                       f"(keys: {', '.join(sorted(_TASK_KEYS))})")
    task, args, kwargs = entry.get("task"), entry.get("args", []), entry.get("kwargs", {})
    if not isinstance(task, str) or not task:
        raise BadInput(f"{where}: task must be the task's registered name, not {task!r}")
    if not isinstance(args, list) or not isinstance(kwargs, dict):
        raise BadInput(f"{where}: args must be a list and kwargs a mapping")
    return PublishLoad(task, _rate(entry, where), tuple(args), kwargs)


def _load(entry: Any, where: str) -> RequestLoad:
    if not isinstance(entry, dict):
        raise BadInput(f"{where} must be a mapping of method, path, body, rate")
    unknown = set(entry) - _KEYS
    if unknown:
        raise BadInput(f"{where}: unknown key {sorted(unknown)[0]!r} "
                       f"(keys: {', '.join(sorted(_KEYS))})")
    method = str(entry.get("method", "POST")).upper()
    if method not in METHODS:
        raise BadInput(f"{where}: method {method!r} is not one of {', '.join(METHODS)}")
    path = entry.get("path")
    if not isinstance(path, str) or not path.startswith("/"):
        raise BadInput(f"{where}: path must be a string starting with '/', not {path!r}")
    return RequestLoad(path, _rate(entry, where), 0.0, acknowledged=False, method=method,
                       body=entry.get("body"), own=False)
