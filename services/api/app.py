"""The API app factory. ``lifespan`` owns the scheduler, its guard and the Redis clients."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from typing import Any

import redis.asyncio as aioredis
from fastapi import FastAPI

from services.api.guards import TickGuard, make_guard
from services.api.middleware import add_middleware
from services.api.processes import counts_name
from services.api.routes import router
from services.ledger import AsyncLedger
from services.settings import LabSettings, load_settings


def _celery_factory(settings: LabSettings) -> Any:
    from services.worker.app import make_celery  # imported on first use: Celery is heavy

    return make_celery(settings)


def _embedded_scheduler(settings: LabSettings, ledger: AsyncLedger,
                        guard: TickGuard) -> AbstractAsyncContextManager[None]:
    # Imported here: APScheduler 3 and 4 share the import name, and a replica has one.
    if settings.scheduler_library == "apscheduler4":
        from services.api.scheduler4 import embedded_scheduler

        return embedded_scheduler(settings, ledger)
    from services.api.scheduler import Ticker, running

    return running(settings, Ticker(settings, ledger, guard))


def create_app(settings: LabSettings | None = None) -> FastAPI:
    """Build an API replica; nothing connects until the lifespan starts."""
    settings = settings or load_settings()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        ledger = AsyncLedger.from_url(settings.ledger_url)
        broker = aioredis.Redis.from_url(settings.broker_url, socket_timeout=2,
                                         socket_connect_timeout=2)
        guard = make_guard(settings, broker)
        app.state.settings = settings
        app.state.ledger = ledger
        app.state.celery = functools.cache(functools.partial(_celery_factory, settings))
        scheduler = contextlib.AsyncExitStack()
        await guard.start()
        if settings.scheduler_enabled:
            await scheduler.enter_async_context(_embedded_scheduler(settings, ledger, guard))
        await ledger.announce(settings.instance, "api")
        try:
            yield
        finally:
            await scheduler.aclose()
            await guard.stop()
            with contextlib.suppress(Exception):  # best effort: the ledger may be gone
                await ledger.report_counts(counts_name(settings))
            await ledger.aclose()
            await broker.aclose()

    app = FastAPI(title="scalelab api replica", lifespan=lifespan)
    app.state.settings = settings
    add_middleware(app, settings)
    app.include_router(router)
    return app
