"""``python -m services.probe.api --host H --port P``: one replica of the user's ASGI app.

The hooks go in before the app is imported, so whatever scheduler or Celery app it
builds is observed; uvicorn then serves the app behind ``ProbeApp``.
"""

from __future__ import annotations

import argparse
import os
import sys

import uvicorn

from services.probe import background, celery_hooks, scheduler_hooks
from services.probe.context import current
from services.probe.load import ASGI, CELERY, NotLoadable, load_asgi, load_celery, prepare


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m services.probe.api")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    prepare()
    probe = current()
    if probe is None:
        sys.stderr.write("scalelab probe: SCALELAB_PROBE is not set\n")
        return 2
    background.install()
    scheduler_hooks.install()
    celery_hooks.install()
    try:
        if os.environ.get(CELERY):
            load_celery(os.environ[CELERY])  # the broker is the lab's before any task is sent
        app = load_asgi(os.environ[ASGI])
    except NotLoadable as exc:
        sys.stderr.write(f"scalelab probe: {exc}\n")
        return 2
    uvicorn.run(background.ProbeApp(app, probe), host=args.host, port=args.port,
                log_level="warning", access_log=False, lifespan="auto")
    return 0


if __name__ == "__main__":
    sys.exit(main())
