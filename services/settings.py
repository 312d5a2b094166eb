"""Lab settings, read from the environment only (prefix ``SCALELAB_``).

Every instance (API replica, Celery worker, Celery beat) is configured by the
platform through environment variables: on the local platform the harness sets
them on each process, on Kubernetes a ConfigMap does. Nothing here reads a file.
"""

from __future__ import annotations

import os
import socket
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

SchedulerGuard = Literal["none", "redis-lock", "leader"]
SchedulerAlign = Literal["aligned", "per-instance"]
SchedulerLibrary = Literal["apscheduler3", "apscheduler4"]
LeaderBackend = Literal["redis", "kubernetes"]
AcksMode = Literal["early", "late"]
ApiMiddleware = Literal["none", "base-http"]
EvictionPolicy = Literal["noeviction", "allkeys-lru", "volatile-lru", "allkeys-random",
                         "volatile-ttl"]
BeatGuard = Literal["none", "redbeat"]


def _default_instance() -> str:
    # On Kubernetes HOSTNAME is the pod name, which is what a fault targets.
    return os.environ.get("HOSTNAME") or socket.gethostname()


class LabSettings(BaseSettings):
    """Everything an instance needs to know, with the defaults of an unguarded lab."""

    model_config = SettingsConfigDict(env_prefix="SCALELAB_", extra="ignore")

    instance: str = Field(default_factory=_default_instance)
    component: Literal["api", "worker", "beat", "arq", "procrastinate", "rq", "huey",
                       "huey-periodic", "dramatiq"] = "api"
    ledger_url: str = "redis://127.0.0.1:6379/0"
    broker_url: str = "redis://127.0.0.1:6379/1"

    # The API's embedded AsyncIOScheduler.
    scheduler_enabled: bool = True
    scheduler_interval: float = Field(default=1.0, gt=0, le=3600)
    scheduler_align: SchedulerAlign = "aligned"
    scheduler_guard: SchedulerGuard = "none"
    tick_seconds: float = Field(default=0.05, ge=0, le=600)
    lock_ttl: float = Field(default=30.0, gt=0, le=86400)
    misfire_grace: float = Field(default=1.0, gt=0, le=3600)
    coalesce: bool = True
    # Which library the API replicas embed: today's APScheduler 3 AsyncIOScheduler, or
    # APScheduler 4.0.0a6 (a pre-release) sharing one data store (PostgreSQL) and the
    # broker Redis as its event broker.
    scheduler_library: SchedulerLibrary = "apscheduler3"
    datastore_url: str = ""  # postgresql://... (apscheduler4)
    apscheduler4_lease: float = Field(default=30.0, gt=0, le=3600)  # the library's default

    # Leader election (scheduler_guard == "leader").
    leader_backend: LeaderBackend = "redis"
    lease_seconds: float = Field(default=3.0, gt=0, le=600)
    fencing: bool = False
    lease_namespace: str = "scalelab"

    # Celery.
    acks: AcksMode = "early"
    visibility_timeout: float = Field(default=10.0, gt=0, le=86400)
    unacked_restore_interval: float = Field(default=2.0, gt=0, le=3600)
    worker_concurrency: int = Field(default=2, ge=1, le=64)
    idempotent: bool = False
    beat_interval: float = Field(default=1.0, gt=0, le=3600)
    beat_guard: BeatGuard = "none"
    beat_lock_timeout: float = Field(default=5.0, gt=0, le=3600)

    # The API's process model: uvicorn --workers (each worker process embeds its own
    # scheduler), and an HTTP middleware in front of the routes ("base-http": Starlette's
    # BaseHTTPMiddleware, which once cancelled BackgroundTasks on a client disconnect).
    api_workers: int = Field(default=1, ge=1, le=16)
    api_preload: bool = False  # build the app before forking the workers (gunicorn --preload)
    api_middleware: ApiMiddleware = "none"

    # Celery switches for the failures users report (see services.worker.app).
    prefetch_multiplier: int = Field(default=1, ge=1, le=64)
    reject_on_worker_lost: bool = True  # applies with acks late (Celery's default: off)
    countdown: float = Field(default=0.0, ge=0, le=3600)  # every submission's countdown
    poison_work: str = ""  # a work_id whose task SIGKILLs its own pool child, every time
    # A work_id whose task allocates (and touches) ``hog_mb`` MiB before its work: past a
    # container's memory limit the kernel's OOM killer ends it (or its whole container).
    hog_work: str = ""
    hog_mb: int = Field(default=0, ge=0, le=65536)
    # > 0: each worker instance also runs a second Celery app on the same broker, on its
    # own queue, with this visibility timeout (the shortest one wins: kombu #337).
    other_visibility_timeout: float = Field(default=0.0, ge=0, le=86400)

    # The task queues of the fixes matrix (services.<library>_worker), each running the tick.
    # procrastinate: the "Retry stalled jobs" periodic task, for workers silent this long.
    stalled_retry: bool = False
    stalled_after: float = Field(default=2.0, gt=0, le=3600)
    # Dramatiq's Redis broker: a worker silent this long has its messages requeued
    # (dramatiq's default: 60 s).
    heartbeat_timeout: float = Field(default=60.0, gt=0, le=3600)
    # Huey: consumers of component "huey" run with --no-periodic (the one "huey-periodic"
    # consumer enqueues the periodic tasks).
    huey_no_periodic: bool = False

    # The broker redis-server's memory limit and eviction policy: "" none, a size ("2mb"),
    # or a margin over its footprint once the lab is connected ("+150kb").
    broker_maxmemory: str = Field(default="", pattern=r"^(\+?[0-9]+(kb|mb|gb)?)?$")
    broker_maxmemory_policy: EvictionPolicy = "noeviction"

    # Celery 5.5's soft shutdown: seconds a worker's cold shutdown lets running tasks
    # finish before it cancels them and puts their unacknowledged messages back
    # (worker_soft_shutdown_timeout; 0: off, Celery's default). A SIGTERM starts it only
    # where the platform sets REMAP_SIGTERM=SIGQUIT in the worker's environment before
    # Celery is imported (billiard reads it then): the kubernetes platform does.
    soft_shutdown_timeout: float = Field(default=0.0, ge=0, le=3600)

    # The API's own graceful shutdown, in seconds (uvicorn --timeout-graceful-shutdown).
    shutdown_grace: float = Field(default=1.0, ge=0, le=600)


def load_settings() -> LabSettings:
    """Read the settings from the environment (call at start-up, never at import)."""
    return LabSettings()
