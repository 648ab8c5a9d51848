"""Nothing stuck, nothing lost: a periodic pass over jobs the queue may have forgotten.

- ``processing`` held by a dead worker: its liveness record (``service/store/workers.py``) has
  not been refreshed for ``WORKER_STALE_S``, or says it stopped, and the job's own heartbeat is
  that old too. Or, whoever holds it, a job whose heartbeat is older than ``STALE_AFTER_S``: the
  last line of defence for a worker alive but stuck. Release it to ``pending`` and ring again
  (``release``), or, on its ``JOB_MAX_ATTEMPTS``-th lost run, fail it with ``worker lost``
  (``lose``). Both are guarded by the lease the sweeper saw and by the heartbeat still being
  stale, so a worker that wakes up in between keeps its job, and one that wakes up after finds
  its lease gone and changes nothing. A worker started again in the slot of a dead one does the
  same for its predecessor's jobs at once (``hand_back_predecessors``).
- ``failed`` or ``cancelled`` and still ``discard_pending`` after ``STALE_AFTER_S``: its run died
  before removing what it wrote, or the page store was down. Remove it (``discard``) now.
- a chapter whose index is ``indexing`` with a heartbeat older than ``STALE_AFTER_S``: its
  worker's indexer died. Hand it back to be indexed (``service/domain/indexing.py``).
- a deleted job's tombstone, ``STALE_AFTER_S`` after the deletion: remove what a run that was
  writing for it left (``service/store/tombstones.py``).
- ``pending`` not started within ``PENDING_GRACE_S`` of its last ring, and no doorbell of it
  waiting in the queue (``service/store/doorbell.py``): the doorbell was lost (Redis down at
  creation, Redis flushed, taken by a worker that died before claiming). Ring it again
  (``ring``, once per sweeper); while Redis is down nothing is recorded, so the first sweep
  after it is back rings. A job whose doorbell is still queued behind others is left alone:
  ringing it again would only lengthen the queue.

``keep_sweeping`` runs in every worker as a task of its own, every ``SWEEP_INTERVAL_S``, whatever
its job slots are doing; a lock in MongoDB (``service/store/locks.py``) lets one sweep run at a
time across workers. After an outage of MongoDB heartbeats are judged only once it has been back
for ``STALE_AFTER_S``, and worker records once it has been back for ``WORKER_STALE_S``: nobody
could beat while nobody could reach it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

from arq.connections import ArqRedis

from service.domain import indexing, lifecycle
from service.domain.job import new_id, utcnow
from service.settings import Settings
from service.store.database import Store
from service.store.discard import discard_or_leave
from service.store.doorbell import ring, waiting
from service.store.failure import is_transient
from worker import metrics
from worker.cancel import cancel_and_wait
from worker.dependency import MONGODB

log = logging.getLogger("worker.sweeper")

Doc = dict[str, Any]
WORKER_LOST = "worker lost"
# Jobs whose output one sweep removes at most, oldest first: a sweep stays short.
DISCARDS_PER_SWEEP = 100
# Pending jobs whose doorbells are looked up in Redis together (two round trips a batch).
DOORBELL_BATCH = 100


async def hand_back_lost(
    store: Store,
    queue: ArqRedis,
    settings: Settings,
    doc: Doc,
    now: datetime,
    stale_before: datetime | None,
) -> str | None:
    """Hand back a job whose run was lost with its worker: ``"released"`` (and rung),
    ``"lost"`` on its ``JOB_MAX_ATTEMPTS``-th lost run, or None when the lease moved on meanwhile
    (the worker woke up, or someone else handed it back first). ``stale_before``: the job's
    heartbeat must still be older than that (None: the worker is known dead, the lease is enough).
    """
    job_id, lease_id = doc["job_id"], doc.get("lease_id")
    lost_runs = int(doc.get("lost_runs") or 0) + 1
    if lost_runs >= settings.job_max_attempts:
        if not await store.jobs.apply(
            lifecycle.lose(job_id, lease_id, stale_before, WORKER_LOST, now)
        ):
            return None
        # A failed job keeps no pages. Not final: its run may be paused, not dead, and write
        # again when it wakes; the discard pass removes that STALE_AFTER_S later.
        await discard_or_leave(store, job_id, final=False)
        log.warning("job %s: failed, worker lost %d times", job_id, lost_runs)
        return "lost"
    if not await store.jobs.apply(
        lifecycle.release(job_id, now, lease_id=lease_id, stale_before=stale_before, lost=True)
    ):
        return None
    log.warning("job %s: worker lost, released to be resumed", job_id)
    # First in the queue: it was started before every job still waiting, and its user watches it.
    await ring(queue, job_id, f"released-{doc.get('attempts', 0)}", first=True)
    return "released"


async def sweep(
    ctx: dict[str, Any], *, judge_heartbeats: bool = True, judge_workers: bool | None = None
) -> dict[str, int]:
    """One pass; returns counts of what it did. ``judge_heartbeats`` False skips jobs with a
    stale heartbeat, ``judge_workers`` False jobs of stale workers (by default: the same)."""
    settings: Settings = ctx["settings"]
    store: Store = ctx["store"]
    queue = ctx["redis"]
    now = utcnow()
    counts = {"released": 0, "lost": 0, "rung": 0, "discarded": 0, "reindexed": 0}

    def count(outcome: str | None) -> None:
        if outcome is not None:
            counts[outcome] += 1

    if judge_heartbeats if judge_workers is None else judge_workers:
        dead = await store.workers.stale(settings.worker_stale_s)
        if dead:
            quiet_before = now - timedelta(seconds=settings.worker_stale_s)
            async for doc in store.jobs.held_by(dead, quiet_before):
                count(await hand_back_lost(store, queue, settings, doc, now, quiet_before))
    if judge_heartbeats:
        stale_before = now - timedelta(seconds=settings.stale_after_s)
        async for doc in store.jobs.stale(stale_before):
            count(await hand_back_lost(store, queue, settings, doc, now, stale_before))

    await _ring_forgotten(store, queue, settings, now, counts)
    # The last word on the output of a job that ended without a chapter, once the job has been
    # still for STALE_AFTER_S: what its run's own discard missed (an upload committed late), or
    # all of it (its run died, or the page store could not be reached when it stopped).
    still_since = now - timedelta(seconds=settings.stale_after_s)
    async for doc in store.jobs.discard_pending(still_since, DISCARDS_PER_SWEEP):
        if not await discard_or_leave(store, doc["job_id"]):
            break  # the page store is down: the next sweep tries again, the others wait
        counts["discarded"] += 1
    # ... and of a deleted job, whose run may have written after the deletion removed it all.
    async for doc in store.tombstones.due(still_since, DISCARDS_PER_SWEEP):
        job_id = str(doc["_id"])
        if not await discard_or_leave(store, job_id, doc.get("chapter_id"), final=False):
            break
        await store.tombstones.swept(job_id)
        counts["discarded"] += 1
    # A chapter whose indexer died mid-way goes back to be indexed (its next claim counts an
    # attempt; the indexer gives up on one that keeps failing).
    if judge_heartbeats:
        index_stale_before = now - timedelta(seconds=settings.stale_after_s)
        async for doc in store.chapters.stale_indexing(index_stale_before):
            lease_id = (doc.get("search") or {}).get("lease_id")
            write = indexing.release(doc["chapter_id"], lease_id, stale_before=index_stale_before)
            if await store.chapters.apply_index(write):
                counts["reindexed"] += 1
                log.warning("chapter %s: its indexer was lost; handed back", doc["chapter_id"])
    if any(counts.values()):
        log.info("sweep: %s", counts)
    return counts


async def _ring_forgotten(
    store: Store, queue: ArqRedis, settings: Settings, now: datetime, counts: dict[str, int]
) -> None:
    """Ring pending jobs past their grace whose doorbells are all gone."""
    forgotten = store.jobs.forgotten(now - timedelta(seconds=settings.pending_grace_s))
    while batch := [doc async for doc in _take(forgotten, DOORBELL_BATCH)]:
        try:
            queued = await waiting(queue, [doc["job_id"] for doc in batch], settings)
        except Exception as exc:
            if not is_transient(exc):
                raise
            log.warning("sweep: Redis unreachable (%s); doorbells rung later", type(exc).__name__)
            return
        for doc in batch:
            if doc["job_id"] in queued:
                continue
            # Ring first, then record it: a ring that fails (Redis down) leaves the job as it
            # was, to be rung by the next sweep.
            if not await ring(queue, doc["job_id"], f"swept-{int(now.timestamp() * 1000)}"):
                return
            if await store.jobs.apply(lifecycle.ring(doc["job_id"], doc["rung_at"], now)):
                counts["rung"] += 1


async def _take(docs: AsyncIterator[Doc], size: int) -> AsyncIterator[Doc]:
    """The next ``size`` documents of an async iterator."""
    for _ in range(size):
        try:
            yield await anext(docs)
        except StopAsyncIteration:
            return


SWEEP_LOCK = "sweeper"


async def keep_sweeping(ctx: dict[str, Any]) -> None:
    """Sweep every ``SWEEP_INTERVAL_S`` until cancelled, when this worker holds the sweep lock.

    The lock lasts two intervals and its holder renews it at each of its sweeps, so one worker
    sweeps while it lives, and another takes over within three intervals when it dies or stalls.
    A failed sweep (MongoDB down) is tried again at the next tick; nothing ends the loop.
    """
    settings: Settings = ctx["settings"]
    locks = ctx["store"].locks
    interval = float(settings.sweep_interval_s)
    holder = ctx["sweeper_holder"] = f"{socket.gethostname()}:{os.getpid()}:{new_id()[:8]}"
    while True:
        started = time.monotonic()
        try:
            if await locks.acquire(SWEEP_LOCK, holder, 2 * interval):
                back_for = MONGODB.up_for_s()
                judge = back_for >= settings.stale_after_s
                if not judge:
                    log.info(
                        "sweep: MongoDB back for %.1f s only; heartbeats judged later", back_for
                    )
                await sweep(
                    ctx, judge_heartbeats=judge, judge_workers=back_for >= settings.worker_stale_s
                )
                metrics.LAST_SWEEP.set_to_current_time()
            MONGODB.up()
        except Exception as exc:
            if not is_transient(exc):
                log.exception("sweep failed; the next one runs in %.0f s", interval)
            else:
                MONGODB.down(exc)
        await asyncio.sleep(max(0.0, interval - (time.monotonic() - started)))


async def stop_sweeping(ctx: dict[str, Any], task: asyncio.Task[None]) -> None:
    """Cancel the loop and give the lock back, so another worker sweeps at its next tick."""
    await cancel_and_wait(task)  # one cancel() may be lost in a Redis or MongoDB call
    holder = ctx.get("sweeper_holder")
    if holder is not None:
        with contextlib.suppress(Exception):
            async with asyncio.timeout(2):
                await ctx["store"].locks.release(SWEEP_LOCK, holder)
