"""A loopback TCP proxy in front of the broker Redis: the local platform's network partition.

Locally every instance reaches the broker through its own ``BrokerProxy``, so the nemesis
can cut one instance off the broker while the others, and the harness, still reach it —
what a NetworkPolicy does to one pod on a cluster. ``cut`` drops every open connection
(reset, as a peer that vanished) and refuses new ones (the listening socket is closed);
``restore`` listens again on the same port. The ledger is never proxied: it observes,
it is never partitioned.

The upstream address is asked for on every new connection, so a broker restarted on
another port (a broker outage) is followed. All proxies of a lab share one event loop
in one daemon thread (``ProxyLoop``); ``close`` ends a proxy and its connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from chaos.platform import PlatformError

Upstream = Callable[[], tuple[str, int]]  # (host, port) of the broker, asked per connection

_T = TypeVar("_T")
_CHUNK = 65536
_LOOPBACK = "127.0.0.1"


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP reset (SO_LINGER 0): the peer sees its connection vanish."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class ProxyLoop:
    """One asyncio loop in a daemon thread that runs every proxy of a lab."""

    def __init__(self) -> None:
        self.proxies: list[BrokerProxy] = []
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="broker-proxies",
                                        daemon=True)
        self._thread.start()

    def call(self, coro: Coroutine[Any, Any, _T], timeout: float = 10.0) -> _T:
        """Run ``coro`` on the proxies' loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        """Cut every proxy, end every connection's task, stop the thread."""
        if self.loop.is_closed():
            return
        with contextlib.suppress(RuntimeError, TimeoutError):
            self.call(self._shutdown())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=5)
        if not self._thread.is_alive():
            self.loop.close()

    async def _shutdown(self) -> None:
        for proxy in self.proxies:
            await proxy._cut()
        me = asyncio.current_task()
        tasks = [t for t in asyncio.all_tasks() if t is not me]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


class BrokerProxy:
    """One instance's path to the broker: listen on a loopback port, forward to upstream."""

    def __init__(self, name: str, upstream: Upstream, loop: ProxyLoop) -> None:
        self.name, self.upstream, self._loop = name, upstream, loop
        self.port = 0
        self.connections = 0  # accepted so far (tests and the summary read it)
        self._server: asyncio.Server | None = None
        self._open: set[asyncio.StreamWriter] = set()
        self.cut_off = False
        loop.proxies.append(self)

    @property
    def url(self) -> str:
        """The broker URL an instance behind this proxy is given (database 0)."""
        return f"redis://{_LOOPBACK}:{self.port}/0"

    def start(self) -> None:
        """Listen on a free loopback port (kept for ``restore``)."""
        self._loop.call(self._listen())

    def cut(self) -> None:
        """Drop every open connection and refuse new ones until ``restore``."""
        self._loop.call(self._cut())

    def restore(self) -> None:
        """Accept connections again, on the same port."""
        self._loop.call(self._listen())

    def close(self) -> None:
        with contextlib.suppress(RuntimeError, TimeoutError):
            self._loop.call(self._cut())

    # --- on the proxies' loop -------------------------------------------------------------
    async def _listen(self) -> None:
        if self._server is not None:
            return
        try:
            self._server = await asyncio.start_server(self._accept, _LOOPBACK, self.port,
                                                      reuse_address=True)
        except OSError as exc:
            raise PlatformError(f"broker proxy for {self.name} cannot listen on "
                                f"{_LOOPBACK}:{self.port}: {exc}") from None
        self.port = self._server.sockets[0].getsockname()[1]
        self.cut_off = False

    async def _cut(self) -> None:
        self.cut_off = True
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._open):
            _reset(writer)
        self._open.clear()

    async def _accept(self, client_r: asyncio.StreamReader,
                      client_w: asyncio.StreamWriter) -> None:
        if self.cut_off:
            _reset(client_w)
            return
        self.connections += 1
        host, port = self.upstream()
        try:
            upstream_r, upstream_w = await asyncio.open_connection(host, port)
        except OSError:
            _reset(client_w)  # the broker itself is down: as a refused connection would
            return
        pair = {client_w, upstream_w}
        self._open |= pair
        try:
            await asyncio.gather(self._pump(client_r, upstream_w),
                                 self._pump(upstream_r, client_w))
        finally:
            self._open -= pair

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Copy one direction until either side ends; then end both."""
        try:
            while data := await reader.read(_CHUNK):
                writer.write(data)
                await writer.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            if not writer.is_closing():
                writer.close()
