"""The broker's Redis as the harness reaches it through its NodePort: whether it
answers, closing one pod's connections, and its memory policy (chaos.redis_server).
Kept apart from the platform's logic so unit tests can replace each call."""

from __future__ import annotations

from typing import Any

from chaos.platform import PlatformError
from chaos.redis_server import configure as configure_broker
from chaos.redis_server import footprint as broker_footprint

__all__ = ["broker_footprint", "configure_broker", "kill_broker_clients", "redis_answers"]


def redis_answers(url: str) -> bool:
    """Whether the Redis at ``url`` answers PING (through its NodePort, as the harness sees it)."""
    import redis

    client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


def kill_broker_clients(url: str, ip: str) -> int:
    """Close every connection the broker has from ``ip``; how many there were."""
    import redis

    client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
    try:
        listed: list[dict[str, Any]] = client.client_list()  # type: ignore[assignment]
        mine = str(client.client_id())  # the harness's own, should it come from ``ip``
        ids = [c["id"] for c in listed
               if str(c.get("addr", "")).rpartition(":")[0] == ip and str(c["id"]) != mine]
        for client_id in ids:
            client.client_kill_filter(_id=client_id)
        return len(ids)
    except redis.RedisError as exc:
        raise PlatformError(f"cannot close {ip}'s connections on the broker at {url}: {exc}"
                            ) from None
    finally:
        client.close()


