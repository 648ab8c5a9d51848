"""The queue is a doorbell: MongoDB holds job state, Redis (arq) only says "look at job X".

The API rings when it creates a job, the sweeper when a job's doorbell was lost or its worker
died; both through ``ring``. Connecting is lazy, so the API starts and serves reads while Redis
is down, and a job stored while Redis is down is rung again by the sweeper.
"""

from __future__ import annotations

import logging

from arq.connections import ArqRedis
from redis.asyncio import ConnectionPool
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from service.settings import Settings
from service.store.failure import is_transient

log = logging.getLogger("service.doorbell")

PROCESS_FUNCTION = "process_pdf_chapter"  # the worker's job function, enqueued by name

# Exceptions from the Redis client that mean "Redis is down", not "we have a bug".
REDIS_DOWN: tuple[type[Exception], ...] = (RedisConnectionError, RedisTimeoutError, OSError)


def create_queue(settings: Settings) -> ArqRedis:
    """An arq Redis client with short timeouts; no I/O until first used."""
    pool = ConnectionPool.from_url(
        settings.redis_url, socket_connect_timeout=1.0, socket_timeout=2.0
    )
    return ArqRedis(connection_pool=pool)


def arq_job_id(job_id: str, tag: str) -> str:
    """arq de-duplicates by id: each ring of the doorbell for a job gets its own."""
    return f"{job_id}:{tag}"


async def ring(queue: ArqRedis, job_id: str, tag: str = "new") -> bool:
    """Tell a worker about a job; False (logged) when Redis is unreachable: the job is in
    MongoDB already, and the sweeper rings again once ``PENDING_GRACE_S`` has passed."""
    try:
        await queue.enqueue_job(PROCESS_FUNCTION, job_id, _job_id=arq_job_id(job_id, tag))
    except Exception as exc:
        if not is_transient(exc):  # a failover's READONLY too, not only a refused connection
            raise
        log.warning("job %s: doorbell not rung (%s); the sweeper will ring it", job_id, exc)
        return False
    return True
