"""What every instance of a user's app does first: its environment, its probe, its hooks.

An instance that cannot start (not under a probe, or the app does not load) says why
in one line on stderr and exits 2, as the harness's check would have said it.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any, NoReturn

from services.probe.context import Probe, current
from services.probe.load import NotLoadable, prepare


def _exit(message: str) -> NoReturn:
    sys.stderr.write(f"scalelab probe: {message}\n")
    raise SystemExit(2)


def begin(*hooks: Callable[[], None]) -> Probe:
    """The app's directory and environment set, the hooks installed (before the app is
    imported), and this instance's probe."""
    prepare()
    probe = current()
    if probe is None:
        _exit("SCALELAB_PROBE is not set: instances are started by `scalelab probe`")
    for install in hooks:
        install()
    return probe


def load_app(loader: Callable[[str], Any], variable: str) -> Any:
    """The user's object at the import path in ``variable``, as ``loader`` checks it."""
    try:
        return loader(os.environ[variable])
    except NotLoadable as exc:
        _exit(str(exc))
