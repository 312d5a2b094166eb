"""``python -m services.api --host H --port P``: run one API replica under uvicorn."""

from __future__ import annotations

import argparse

import uvicorn

from services.api.app import create_app
from services.settings import load_settings


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m services.api")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    settings = load_settings()
    # uvicorn --workers W (W > 1): W processes, each building its own app (and scheduler)
    # from the environment, so uvicorn is given the factory's import path.
    several = settings.api_workers > 1
    if several and settings.api_preload:
        from services.api.preload import serve_preloaded

        serve_preloaded(create_app(settings), args.host, args.port, settings.api_workers,
                        log_level="warning", access_log=False,
                        timeout_graceful_shutdown=int(settings.shutdown_grace + 0.999))
        return
    uvicorn.run(
        "services.api.app:create_app" if several else create_app(settings),
        factory=several,
        workers=settings.api_workers if several else None,
        host=args.host,
        port=args.port,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=int(settings.shutdown_grace + 0.999),
    )


if __name__ == "__main__":
    main()
