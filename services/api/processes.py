"""An API replica as one or several processes (``uvicorn --workers W``).

With ``api_workers`` > 1 uvicorn's supervisor spawns W worker processes that share the
replica's port, and each builds the app from the environment and runs its lifespan — so
each embeds its own scheduler, and a replica runs every tick W times (fastapi #12010,
APScheduler #218). Events keep the replica's name (what the platform and its faults
know) and carry the worker process's pid; each process reports its own event count
under ``<replica>:<pid>``, as a Celery pool process does.
"""

from __future__ import annotations

import os

from services.settings import LabSettings


def counts_name(settings: LabSettings) -> str:
    """The name this process reports its event counts under."""
    if settings.api_workers > 1:
        return f"{settings.instance}:{os.getpid()}"
    return settings.instance
