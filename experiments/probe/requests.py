"""The probe's workload file: the user's endpoints, each with a method, path, body and rate.

YAML (or JSON, which is YAML)::

    requests:
      - method: POST
        path: /orders
        body: {"item": "book"}
        rate: 2          # requests per second

Each request carries its work_id in a header; the work it starts inside the app
(background tasks, Celery tasks) is counted there. The file's content, not its path,
is kept with the run, so a stored run is re-checked without it.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import yaml

from experiments.model import BadInput, RequestLoad

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
_KEYS = {"method", "path", "body", "rate"}
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
    loads(json.dumps(raw), str(path))  # checked now, before anything starts
    return json.dumps(raw, sort_keys=True, separators=(",", ":"))


def loads(text: str, where: str = "workload") -> tuple[RequestLoad, ...]:
    """The request loads a workload (canonical JSON) describes."""
    if not text:
        return ()
    raw: Any = json.loads(text)
    if not isinstance(raw, dict) or set(raw) - {"requests"}:
        raise BadInput(f"{where}: expected a mapping with one key, 'requests'")
    entries = raw.get("requests") or []
    if not isinstance(entries, list):
        raise BadInput(f"{where}: 'requests' must be a list")
    return tuple(_load(entry, f"{where}: request {i + 1}") for i, entry in enumerate(entries))


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
    rate = entry.get("rate", 1.0)
    if (isinstance(rate, bool) or not isinstance(rate, int | float) or not math.isfinite(rate)
            or not 0 < rate <= MAX_RATE):
        raise BadInput(f"{where}: rate must be a number of requests per second in "
                       f"(0, {MAX_RATE:g}], not {rate!r}")
    return RequestLoad(path, float(rate), 0.0, acknowledged=False, method=method,
                       body=entry.get("body"), own=False)
