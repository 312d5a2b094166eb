"""The broker proxy against a real redis-server: forward, cut, refuse, restore, follow."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from chaos.processes import free_port
from chaos.proxy import BrokerProxy, ProxyLoop
from chaos.redis_server import RedisServer
from tests.conftest import redis_server, wait_for

_clients: list[redis.Redis] = []


def client(port: int) -> redis.Redis:
    """A client that reports a broken connection at once (no retries); closed after the test."""
    made = redis.Redis(port=port, socket_timeout=2, socket_connect_timeout=2,
                       retry=Retry(NoBackoff(), 0))
    _clients.append(made)
    return made


@pytest.fixture(autouse=True)
def close_clients() -> Iterator[None]:
    yield
    while _clients:
        _clients.pop().close()


@pytest.fixture
def broker(lab_tag: str, tmp_path: Path) -> Iterator[RedisServer]:
    with redis_server("broker", lab_tag, tmp_path) as server:
        yield server


@pytest.fixture
def loop() -> Iterator[ProxyLoop]:
    proxies = ProxyLoop()
    yield proxies
    proxies.close()


def proxy_for(name: str, broker: RedisServer, loop: ProxyLoop) -> BrokerProxy:
    proxy = BrokerProxy(name, lambda: ("127.0.0.1", broker.port), loop)
    proxy.start()
    return proxy


def test_forwards_commands_to_the_broker(broker: RedisServer, loop: ProxyLoop) -> None:
    proxy = proxy_for("api-1", broker, loop)
    assert proxy.port != broker.port
    through = client(proxy.port)
    through.set("k", "v")
    assert client(broker.port).get("k") == b"v"
    # A reply larger than one read crosses the proxy whole.
    big = b"x" * 1_000_000
    through.set("big", big)
    assert through.get("big") == big
    assert proxy.connections == 1


def test_cut_drops_open_connections_refuses_new_ones_and_spares_the_others(
        broker: RedisServer, loop: ProxyLoop) -> None:
    cut_off = proxy_for("worker-1", broker, loop)
    other = proxy_for("worker-2", broker, loop)
    held, spared = client(cut_off.port), client(other.port)
    assert held.ping() and spared.ping()
    cut_off.cut()
    with pytest.raises(redis.ConnectionError):
        held.ping()  # the open connection was dropped
    with pytest.raises(redis.ConnectionError):
        client(cut_off.port).ping()  # and a new one is refused
    assert spared.ping()  # another instance's path is untouched
    assert client(broker.port).ping()  # so is the broker itself
    cut_off.restore()
    port = cut_off.port
    assert client(port).ping()  # the same port serves again
    assert held.ping()  # a client reconnects by itself once restored


def test_follows_a_broker_restarted_on_another_port(broker: RedisServer,
                                                     loop: ProxyLoop) -> None:
    proxy = proxy_for("api-1", broker, loop)
    assert client(proxy.port).ping()
    broker.kill()
    with pytest.raises(redis.ConnectionError):
        client(proxy.port).ping()  # the broker is down: refused through the proxy too
    old = broker.port
    broker.port = free_port()
    broker.start()  # on another port
    assert broker.port != old
    wait_for(lambda: client(proxy.port).ping(), 5, "the proxy to reach the new broker")


def test_close_ends_every_connection(broker: RedisServer, loop: ProxyLoop) -> None:
    proxy = proxy_for("api-1", broker, loop)
    held = client(proxy.port)
    held.client_setname("through-the-proxy")
    direct = client(broker.port)

    def proxied_at_broker() -> int:
        return sum(c.get("name") == "through-the-proxy" for c in direct.client_list())

    assert proxied_at_broker() == 1
    proxy.close()
    with pytest.raises(redis.ConnectionError):
        held.ping()
    wait_for(lambda: proxied_at_broker() == 0, 5, "the proxied connection to leave the broker")
