"""The queue is a doorbell: MongoDB holds job state, Redis (arq) only says "look at job X".

The API rings when it creates a job, the sweeper when a job's doorbell was lost or its worker
died; both through ``ring``. Connecting is lazy, so the API starts and serves reads while Redis
is down, and a job stored while Redis is down is rung again by the sweeper.

The sweeper rings a pending job again only when none of its doorbells is still waiting
(``waiting``): each ring is remembered in a set per job (``pcj:rung:{job_id}``), and arq's own
keys say what became of each: its job key (``arq:job:<id>``) lives from the enqueue until a
worker finishes with it, its in-progress key (``arq:in-progress:<id>``) while a worker runs it.
A doorbell whose job key is there and no worker took it is queued. One a worker took is that
worker's to answer, and it claims the job within milliseconds; taken ``PENDING_GRACE_S`` ago with
its job still pending, it was taken by a worker that died before claiming, and it would stay
"in progress" until arq's own timeout (the job time limit): the job is rung again.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from arq.connections import ArqRedis
from arq.constants import in_progress_key_prefix, job_key_prefix
from redis.asyncio import ConnectionPool
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from service.settings import Settings
from service.store.failure import is_transient

log = logging.getLogger("service.doorbell")

PROCESS_FUNCTION = "process_pdf_chapter"  # the worker's job function, enqueued by name
# The doorbells a job was rung with, by arq id; kept as long as arq keeps an unstarted doorbell
# (its job key expires a day after the enqueue, arq's expires_extra_ms), and an hour more.
RUNG_KEY = "pcj:rung:"
RUNG_KEPT_S = 86_400 + 3_600
# How much longer than a job's own timeout arq keeps a job "in progress" (arq/worker.py:
# in_progress_timeout_s = max_timeout + 10).
ARQ_IN_PROGRESS_EXTRA_S = 10.0
# arq takes doorbells lowest score first, the score being when it may run (the enqueue time by
# default). A job handed back after its worker died rings with the earliest score arq accepts (0
# reads as "no job" in arq's start_jobs), so it resumes before jobs that never started instead of
# waiting behind the whole queue; arq's log then calls it "delayed" by decades.
FIRST = datetime(1970, 1, 1, 0, 0, 0, 1000, tzinfo=UTC)

# Exceptions from the Redis client that mean "Redis is down", not "we have a bug".
REDIS_DOWN: tuple[type[Exception], ...] = (RedisConnectionError, RedisTimeoutError, OSError)


def create_queue(settings: Settings) -> ArqRedis:
    """An arq Redis client with short timeouts; no I/O until first used."""
    pool = ConnectionPool.from_url(
        settings.redis_url, socket_connect_timeout=1.0, socket_timeout=2.0
    )
    return ArqRedis(connection_pool=pool)


def doorbell_timeout_s(settings: Settings) -> float:
    """How long arq lets one doorbell's run last (the job's own limit, and time to hand back)."""
    return settings.job_time_limit_s + 120


def arq_job_id(job_id: str, tag: str) -> str:
    """arq de-duplicates by id: each ring of the doorbell for a job gets its own."""
    return f"{job_id}:{tag}"


async def ring(queue: ArqRedis, job_id: str, tag: str = "new", *, first: bool = False) -> bool:
    """Tell a worker about a job (``first``: before every job that never started); False
    (logged) when Redis is unreachable: the job is in MongoDB already, and the sweeper rings
    again once ``PENDING_GRACE_S`` has passed."""
    arq_id = arq_job_id(job_id, tag)

    try:
        # Remembered first: a doorbell remembered but never enqueued has no arq job key, and
        # counts as gone.
        async with queue.pipeline(transaction=False) as pipe:
            pipe.sadd(RUNG_KEY + job_id, arq_id)
            pipe.expire(RUNG_KEY + job_id, RUNG_KEPT_S)
            await pipe.execute()
        # A date in the past makes arq's default expiry negative: it is given explicitly.
        await queue.enqueue_job(
            PROCESS_FUNCTION, job_id, _job_id=arq_id,
            _defer_until=FIRST if first else None,
            _expires=timedelta(seconds=RUNG_KEPT_S) if first else None,
        )  # fmt: skip
    except Exception as exc:
        if not is_transient(exc):  # a failover's READONLY too, not only a refused connection
            raise
        log.warning("job %s: doorbell not rung (%s); the sweeper will ring it", job_id, exc)
        return False
    return True


async def waiting(queue: ArqRedis, job_ids: Iterable[str], settings: Settings) -> set[str]:
    """Those of ``job_ids`` with a doorbell still waiting: queued for a worker, or taken by one
    less than ``PENDING_GRACE_S`` ago. Two round trips to Redis, however many jobs."""
    ids = list(job_ids)
    async with queue.pipeline(transaction=False) as pipe:
        for job_id in ids:
            pipe.smembers(RUNG_KEY + job_id)
        rung: list[set[bytes]] = await pipe.execute()
    doorbells = [
        (job_id, arq_id.decode()) for job_id, arqs in zip(ids, rung, strict=True) for arq_id in arqs
    ]
    if not doorbells:
        return set()
    async with queue.pipeline(transaction=False) as pipe:
        for _, arq_id in doorbells:
            pipe.exists(job_key_prefix + arq_id)
            pipe.pttl(in_progress_key_prefix + arq_id)
        replies = await pipe.execute()
    in_progress_s = doorbell_timeout_s(settings) + ARQ_IN_PROGRESS_EXTRA_S
    found: set[str] = set()
    for n, (job_id, _) in enumerate(doorbells):
        exists, ttl_ms = replies[2 * n], replies[2 * n + 1]
        if not exists:
            continue  # finished, refused or expired: arq deleted its job key
        if ttl_ms < 0:  # -2: no worker took it (-1, no expiry, arq never sets)
            found.add(job_id)
        elif in_progress_s - ttl_ms / 1000 < settings.pending_grace_s:
            found.add(job_id)  # taken just now: the worker is claiming it
    return found
