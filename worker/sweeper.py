"""Nothing stuck, nothing lost: a periodic pass over jobs the queue may have forgotten.

- ``processing`` with a stale heartbeat: its worker died or stalled. Release it to ``pending``
  and ring again (``release``), or, after ``JOB_MAX_ATTEMPTS`` claims, fail it with ``worker
  lost`` (``lose``). Both are guarded by the lease the sweeper saw and by the heartbeat still
  being stale, so a worker that wakes up in between keeps its job, and one that wakes up after
  finds its lease gone and changes nothing.
- ``pending`` not started within ``PENDING_GRACE_S`` of its last ring: the doorbell was lost
  (Redis down at creation, Redis flushed). Ring it again (``ring``, once per sweeper).
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from service.domain import lifecycle
from service.domain.job import JobStatus, utcnow
from service.settings import Settings
from service.store.chapters import discard
from service.store.doorbell import ring
from service.store.job_store import apply, jobs

log = logging.getLogger("worker.sweeper")

WORKER_LOST = "worker lost"


async def sweep(ctx: dict[str, Any]) -> dict[str, int]:
    """One pass; returns counts of what it did."""
    settings: Settings = ctx["settings"]
    queue = ctx["redis"]
    now = utcnow()
    stale_before = now - timedelta(seconds=settings.stale_after_s)
    counts = {"released": 0, "lost": 0, "rung": 0}

    stale = jobs().find(
        {"status": JobStatus.processing.value, "heartbeat_at": {"$lt": stale_before}},
        {"job_id": 1, "lease_id": 1, "attempts": 1},
    )
    async for doc in stale:
        job_id, lease_id = doc["job_id"], doc.get("lease_id")
        if doc.get("attempts", 0) >= settings.job_max_attempts:
            if await apply(lifecycle.lose(job_id, lease_id, stale_before, WORKER_LOST, now)):
                await discard(job_id, ctx["page_store"])  # a failed job keeps no pages
                counts["lost"] += 1
                log.warning("job %s: failed, worker lost %d times", job_id, doc["attempts"])
        elif await apply(
            lifecycle.release(job_id, now, lease_id=lease_id, stale_before=stale_before)
        ):
            counts["released"] += 1
            log.warning("job %s: worker lost, released to be resumed", job_id)
            await ring(queue, job_id, f"released-{doc.get('attempts', 0)}")

    forgotten = jobs().find(
        {
            "status": JobStatus.pending.value,
            "rung_at": {"$lt": now - timedelta(seconds=settings.pending_grace_s)},
        },
        {"job_id": 1, "rung_at": 1},
    )
    async for doc in forgotten:
        if await apply(lifecycle.ring(doc["job_id"], doc["rung_at"], now)):
            counts["rung"] += 1
            await ring(queue, doc["job_id"], f"swept-{int(now.timestamp() * 1000)}")
    if any(counts.values()):
        log.info("sweep: %s", counts)
    return counts
