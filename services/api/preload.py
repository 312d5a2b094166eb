"""``--preload``: build the app once, then fork the worker processes (gunicorn's --preload).

People reach for ``gunicorn --preload`` hoping the scheduler then starts once, in the
master. It does not: the app is imported (and here built) before the fork, but a
scheduler started in the lifespan starts in each worker process, after the fork —
every worker still runs every tick. This is that process model with uvicorn's own
server: the parent builds the app and binds the replica's socket, forks
``api_workers`` children that each serve the shared socket, forwards SIGTERM/SIGINT to
them and exits when they have.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
from typing import Any

import uvicorn


def serve_preloaded(app: Any, host: str, port: int, workers: int, **config: Any) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    children = []
    for _ in range(workers):
        pid = os.fork()
        if pid == 0:  # a worker process: the app built before the fork, its own lifespan
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            uvicorn.Server(uvicorn.Config(app, **config)).run(sockets=[sock])
            os._exit(0)
        children.append(pid)

    def forward(signum: int, _frame: Any) -> None:
        for child in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    for child in children:
        while True:
            try:
                os.waitpid(child, 0)
                break
            except InterruptedError:
                continue
            except ChildProcessError:
                break
    sock.close()
