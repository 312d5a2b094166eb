"""An experiment's parameters: each a typed value with bounds, checked the same way whether
it comes from a command-line option or from data (the suite's and the matrix's settings).

The command line (``experiments.options``) turns a ``Param`` into a ``--flag`` and
calls ``Param.check`` to convert what was typed; nothing here knows the command line.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any


class BadInput(ValueError):
    """A parameter the lab cannot run with; the CLI prints it on one line and exits 2."""


def _number(kind: type, value: Any, minimum: float | None, maximum: float | None) -> Any:
    """``value`` as an int or a float within bounds; ValueError saying what is wrong."""
    article = "an integer" if kind is int else "a number"
    if isinstance(value, bool):
        raise ValueError(f"must be {article}, not {value!r}")
    try:
        number = kind(value)
    except (TypeError, ValueError):
        raise ValueError(f"must be {article}, not {value!r}") from None
    if isinstance(number, float) and not math.isfinite(number):
        raise ValueError(f"must be a finite number, not {value!r}")
    if minimum is not None and number < minimum:
        raise ValueError(f"must be at least {minimum:g}, not {value}")
    if maximum is not None and number > maximum:
        raise ValueError(f"must be at most {maximum:g}, not {value}")
    return number


@dataclass(frozen=True)
class Param:
    """One ``--option`` of an experiment: its type (from the default), bounds and help."""

    name: str
    default: Any
    help: str
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] = ()

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def is_switch(self) -> bool:
        return isinstance(self.default, bool)

    def metavar(self) -> str:
        """How ``--help`` shows a number's type and bounds (``NUMBER [0.1..60]``)."""
        name = "INTEGER" if isinstance(self.default, int) else "NUMBER"
        low = "" if self.minimum is None else f"{self.minimum:g}"
        high = "" if self.maximum is None else f"{self.maximum:g}"
        return f"{name} [{low}..{high}]" if low or high else name

    def check(self, value: Any) -> Any:
        """The value converted and checked; ValueError saying what is wrong (no flag)."""
        if self.is_switch:
            if not isinstance(value, bool):
                raise ValueError(f"must be true or false, not {value!r}")
            return value
        if self.choices:
            if value not in self.choices:
                raise ValueError(f"{value!r} is not one of {', '.join(map(repr, self.choices))}")
            return value
        if isinstance(self.default, int | float):
            return _number(type(self.default), value, self.minimum, self.maximum)
        return str(value)

    def convert(self, value: Any) -> Any:
        """A value given as data (the suite's settings), checked as the option would be."""
        try:
            return self.check(value)
        except ValueError as exc:
            raise BadInput(f"{self.flag} {exc}") from None
