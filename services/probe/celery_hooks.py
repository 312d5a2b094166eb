"""Celery, observed through its own signals (no task of the user's is wrapped).

- ``after_task_publish``, in whichever process sent the task (an API replica, beat, a
  worker): the broker took it, so it is an intent; its work_id is the task id.
- ``task_prerun``/``task_postrun`` in the pool process that runs it: a start, then a
  finish if the task ended in SUCCESS, else the execution ended without its effect
  (recorded ``refused`` with the state: FAILURE, RETRY); a retry comes back under the
  same id with the next attempt.
- ``task_failure`` adds the exception's name to that record; ``task_revoked`` ends a
  revoked task's unit the same way.

Signal arguments as Celery documents them: https://docs.celeryq.dev/en/stable/userguide/signals.html
(``after_task_publish``: ``headers`` hold the id with task message protocol 2).
"""

from __future__ import annotations

from typing import Any

from services.ledger import Kind
from services.probe.context import arguments_hash, current, new_exec_id

MECHANISM = "celery"
_open: dict[str, str] = {}  # task id -> exec id, in this process
_errors: dict[str, str] = {}  # task id -> exception name (task_failure precedes postrun)


def _published(sender: Any = None, headers: Any = None, body: Any = None, **_: Any) -> None:
    probe = current()
    task_id = (headers or {}).get("id")
    if probe is None or not task_id:
        return
    args = body[:2] if isinstance(body, list | tuple) else body
    probe.record(Kind.INTENT, str(task_id), MECHANISM,
                 detail={"task": str(sender), "args": arguments_hash(args)})


def _prerun(task_id: str = "", task: Any = None, args: Any = None, kwargs: Any = None,
            **_: Any) -> None:
    probe = current()
    if probe is None or not task_id:
        return
    exec_id = _open[task_id] = new_exec_id()
    request = getattr(task, "request", None)
    retries = int(getattr(request, "retries", 0) or 0)
    delivery = getattr(request, "delivery_info", None) or {}
    probe.record(Kind.START, task_id, MECHANISM, exec_id=exec_id, attempt=retries + 1,
                 detail={"task": getattr(task, "name", ""),
                         "args": arguments_hash([list(args or ()), dict(kwargs or {})]),
                         **({"redelivered": True} if delivery.get("redelivered") else {})})


def _failure(task_id: str = "", exception: BaseException | None = None, **_: Any) -> None:
    if task_id:
        _errors[task_id] = type(exception).__name__ if exception is not None else "error"


def _postrun(task_id: str = "", task: Any = None, state: str = "", **_: Any) -> None:
    probe = current()
    exec_id = _open.pop(task_id, "")
    if probe is None or not task_id:
        return
    retries = int(getattr(getattr(task, "request", None), "retries", 0) or 0)
    if state == "SUCCESS":
        probe.record(Kind.FINISH, task_id, MECHANISM, exec_id=exec_id, attempt=retries + 1)
        return
    detail = {"state": state or "unknown"}
    if task_id in _errors:
        detail["error"] = _errors.pop(task_id)
    probe.record(Kind.REFUSED, task_id, MECHANISM, exec_id=exec_id, attempt=retries + 1,
                 detail=detail)


def _revoked(request: Any = None, terminated: bool = False, expired: bool = False,
             **_: Any) -> None:
    probe = current()
    task_id = getattr(request, "id", None)
    if probe is None or not task_id:
        return
    probe.record(Kind.REFUSED, str(task_id), MECHANISM, exec_id=_open.pop(str(task_id), ""),
                 detail={"state": "REVOKED", "terminated": bool(terminated),
                         "expired": bool(expired)})


def install() -> None:
    """Connect the receivers (weak=False: nothing else holds them)."""
    from celery import signals

    signals.after_task_publish.connect(_published, weak=False)
    signals.task_prerun.connect(_prerun, weak=False)
    signals.task_failure.connect(_failure, weak=False)
    signals.task_postrun.connect(_postrun, weak=False)
    signals.task_revoked.connect(_revoked, weak=False)
