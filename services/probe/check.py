"""``python -m services.probe.check``: does the user's app load as the probe needs it?

Run by the harness before it starts anything, in a process of its own (the user's
modules are imported there, never in the harness). Exit 0, or 2 with one line on
stderr naming the problem.
"""

from __future__ import annotations

import os
import sys

from services.probe.load import ASGI, CELERY, NotLoadable, load_asgi, load_celery, prepare


def main() -> int:
    prepare()
    try:
        if os.environ.get(CELERY):
            load_celery(os.environ[CELERY])
        if os.environ.get(ASGI):
            load_asgi(os.environ[ASGI])
    except NotLoadable as exc:
        sys.stderr.write(f"{exc}\n")
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
