"""The task queues of the fixes matrix, as components of the local platform.

Each component is a real process per instance running one library's worker (and,
where the library has one, its scheduler) with the tick as its periodic job. This
table says what each component runs, which library it needs installed (the
``queues`` extra), and whether it needs the lab's PostgreSQL; the platform refuses
in one line a topology whose library is missing, before anything starts.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterable
from dataclasses import dataclass

from chaos.platform import PlatformError


@dataclass(frozen=True)
class TaskQueue:
    """One component: the module its instances run and what that module needs."""

    module: str  # ``python -m <module>``
    library: str  # the import name that must be installed
    datastore: bool = False  # needs the lab's PostgreSQL (SCALELAB_DATASTORE_URL)


TASK_QUEUES: dict[str, TaskQueue] = {
    "arq": TaskQueue("services.arq_worker", "arq"),
    "procrastinate": TaskQueue("services.procrastinate_worker", "procrastinate",
                               datastore=True),
    "rq": TaskQueue("services.rq_worker", "rq"),
    "huey": TaskQueue("services.huey_consumer", "huey"),
    "huey-periodic": TaskQueue("services.huey_consumer", "huey"),
    "dramatiq": TaskQueue("services.dramatiq_worker", "dramatiq"),
}


def needs_datastore(components: Iterable[str]) -> bool:
    return any(TASK_QUEUES[c].datastore for c in components if c in TASK_QUEUES)


def check_installed(components: Iterable[str]) -> None:
    """PlatformError, one line, for the first component whose library is not installed."""
    for component in components:
        queue = TASK_QUEUES.get(component)
        if queue is not None and importlib.util.find_spec(queue.library) is None:
            raise PlatformError(f"{queue.library} is not installed (component {component}); "
                                "install the lab's queues extra: pip install -e '.[queues]'")
