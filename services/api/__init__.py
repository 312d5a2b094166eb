"""The FastAPI API replica: HTTP endpoints plus an embedded APScheduler AsyncIOScheduler."""

from services.api.app import create_app

__all__ = ["create_app"]
