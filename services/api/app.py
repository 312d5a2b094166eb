"""The API app factory. ``lifespan`` owns the scheduler, its guard and the Redis clients."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import AsyncIterator
from typing import Any

import redis.asyncio as aioredis
from fastapi import FastAPI

from services.api.guards import make_guard
from services.api.routes import router
from services.api.scheduler import Ticker, build_scheduler
from services.ledger import AsyncLedger
from services.settings import LabSettings, load_settings


def _celery_factory(settings: LabSettings) -> Any:
    from services.worker.app import make_celery  # imported on first use: Celery is heavy

    return make_celery(settings)


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
        scheduler = build_scheduler(settings, Ticker(settings, ledger, guard))
        await guard.start()
        if settings.scheduler_enabled:
            scheduler.start()
        await ledger.announce(settings.instance, "api")
        try:
            yield
        finally:
            if scheduler.running:
                scheduler.shutdown(wait=False)
            await guard.stop()
            with contextlib.suppress(Exception):  # best effort: the ledger may be gone
                await ledger.report_counts(settings.instance)
            await ledger.aclose()
            await broker.aclose()

    app = FastAPI(title="scalelab api replica", lifespan=lifespan)
    app.state.settings = settings
    app.include_router(router)
    return app
