"""``@unit(key=...)``: name a business unit of work ("email:42") in the ledger.

Each call records an intent (the unit is wanted), a start and, when the function
returns, a finish: a unit that finishes twice is duplicated, one started and never
finished (its instance killed) is lost. ``key`` is a format string over the
function's arguments by name (``"email:{order_id}"``) or a function of the same
arguments returning the key. Outside a probe the decorator only calls the function.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, TypeVar, cast

from services.ledger import Kind
from services.probe.context import Probe, current, new_exec_id

F = TypeVar("F", bound=Callable[..., Any])
MECHANISM = "unit"


def _key_of(func: Callable[..., Any], key: str | Callable[..., str]) -> Callable[..., str]:
    if callable(key):
        return key
    signature = inspect.signature(func)

    def formatted(*args: Any, **kwargs: Any) -> str:
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        return key.format(**bound.arguments)

    return formatted


def _begin(probe: Probe, work_id: str) -> str:
    exec_id = new_exec_id()
    probe.record(Kind.INTENT, work_id, MECHANISM)
    probe.record(Kind.START, work_id, MECHANISM, exec_id=exec_id)
    return exec_id


def _end(probe: Probe, work_id: str, exec_id: str, error: BaseException | None) -> None:
    if error is None:
        probe.record(Kind.FINISH, work_id, MECHANISM, exec_id=exec_id)
    else:  # ended without its effect
        probe.record(Kind.REFUSED, work_id, MECHANISM, exec_id=exec_id,
                     detail={"error": type(error).__name__})


def unit(key: str | Callable[..., str]) -> Callable[[F], F]:
    """Record each call of the decorated function as one execution of unit ``key``."""

    def decorate(func: F) -> F:
        key_of = _key_of(func, key)
        if inspect.iscoroutinefunction(func):
            @functools.wraps(func)
            async def run_async(*args: Any, **kwargs: Any) -> Any:
                probe = current()
                if probe is None:
                    return await func(*args, **kwargs)
                work_id = key_of(*args, **kwargs)
                exec_id = _begin(probe, work_id)
                try:
                    result = await func(*args, **kwargs)
                except BaseException as exc:
                    _end(probe, work_id, exec_id, exc)
                    raise
                _end(probe, work_id, exec_id, None)
                return result

            return cast(F, run_async)

        @functools.wraps(func)
        def run(*args: Any, **kwargs: Any) -> Any:
            probe = current()
            if probe is None:
                return func(*args, **kwargs)
            work_id = key_of(*args, **kwargs)
            exec_id = _begin(probe, work_id)
            try:
                result = func(*args, **kwargs)
            except BaseException as exc:
                _end(probe, work_id, exec_id, exc)
                raise
            _end(probe, work_id, exec_id, None)
            return result

        return cast(F, run)

    return decorate
