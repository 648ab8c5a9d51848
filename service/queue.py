"""The queue is a doorbell: MongoDB holds job state, Redis (arq) only says "look at job X".

Connecting is lazy, so the API starts and serves reads while Redis is down.
"""

from __future__ import annotations

from arq.connections import ArqRedis
from redis.asyncio import ConnectionPool

from service.settings import Settings


def create_queue(settings: Settings) -> ArqRedis:
    """An arq Redis client with short timeouts; no I/O until first used."""
    pool = ConnectionPool.from_url(
        settings.redis_url, socket_connect_timeout=1.0, socket_timeout=2.0
    )
    return ArqRedis(connection_pool=pool)
