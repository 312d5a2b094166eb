"""``python -m services.probe.api --host H --port P``: one replica of the user's ASGI app.

The hooks go in before the app is imported, so whatever scheduler or Celery app it
builds is observed; uvicorn then serves the app behind ``ProbeApp``.
"""

from __future__ import annotations

import argparse
import os

import uvicorn

from services.probe import background, celery_hooks, scheduler4_hooks, scheduler_hooks
from services.probe.instance import begin, load_app
from services.probe.load import ASGI, CELERY, load_asgi, load_celery


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m services.probe.api")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    probe = begin(background.install, scheduler_hooks.install, scheduler4_hooks.install,
                  celery_hooks.install)
    if os.environ.get(CELERY):
        load_app(load_celery, CELERY)  # the broker is the lab's before any task is sent
    app = load_app(load_asgi, ASGI)
    uvicorn.run(background.ProbeApp(app, probe), host=args.host, port=args.port,
                log_level="warning", access_log=False, lifespan="auto")


if __name__ == "__main__":
    main()
