"""``scalelab serve``: the results browser on a port, until Ctrl-C.

The socket is bound here, before uvicorn starts, so a port in use (or a host that
cannot be bound) is one line and exit 2 rather than a server log; port 0 takes any
free port and prints which.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
import sys
from pathlib import Path

from experiments.model import BadInput


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port``; BadInput naming why not."""
    if not 0 <= port <= 65535:
        raise BadInput(f"--port must be between 0 and 65535, not {port}")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise BadInput(f"--host {host!r} cannot be resolved ({exc.strerror})") from None
    family, _, _, _, address = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise BadInput(f"port {port} on {host} is in use (pick another with --port)") from None
        raise BadInput(f"cannot listen on {host}:{port} ({exc.strerror or exc})") from None
    return sock


def serve(results: Path, host: str, port: int) -> None:
    """Serve the browser over ``results`` on ``host:port`` until interrupted."""
    import uvicorn

    from experiments.web.app import create_app

    if results.exists() and not results.is_dir():
        raise BadInput(f"--results {str(results)!r} is a file, not a results directory "
                       "(pass the directory the runs are stored in)")
    if not results.is_dir():
        raise BadInput(f"results directory {str(results)!r} does not exist "
                       "(run an experiment first, or pass --results DIR)")
    sock = bind(host, port)
    bound_host, bound_port = sock.getsockname()[:2]
    shown = f"[{bound_host}]" if ":" in bound_host else bound_host
    print(f"scalelab: serving {results.resolve()} at http://{shown}:{bound_port}/ "
          "(read-only; Ctrl-C stops)", flush=True)
    if not is_loopback(host):
        print(f"scalelab: warning: --host {host} is not a loopback address: the results "
              "become readable from the network", file=sys.stderr, flush=True)
    config = uvicorn.Config(create_app(results), log_level="warning", access_log=False,
                            lifespan="off")
    try:
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        sock.close()
