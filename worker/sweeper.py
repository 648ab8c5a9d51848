"""Nothing stuck, nothing lost: a periodic pass over jobs the queue may have forgotten.

- ``processing`` with a stale heartbeat: its worker died. Release it to ``pending`` and enqueue it
  again, or, after ``JOB_MAX_ATTEMPTS`` claims, fail it with ``worker lost``.
- ``pending`` not started within ``PENDING_GRACE_S`` of its last enqueue: the doorbell was lost
  (Redis down at creation, Redis flushed). Enqueue it again.

Every change is a guarded update, so several workers may sweep at once.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from service.jobs import PROCESS_FUNCTION, arq_job_id
from service.models import JobStatus, PdfChapterJob, utcnow
from service.settings import Settings
from worker.progress import fail, mark_rung, release

log = logging.getLogger("worker.sweeper")

WORKER_LOST = "worker lost"


async def sweep(ctx: dict[str, Any]) -> dict[str, int]:
    """One pass; returns counts of what it did."""
    settings: Settings = ctx["settings"]
    queue = ctx["redis"]
    jobs = PdfChapterJob.get_pymongo_collection()
    now = utcnow()
    counts = {"released": 0, "lost": 0, "rung": 0}

    stale = jobs.find(
        {
            "status": JobStatus.processing.value,
            "heartbeat_at": {"$lt": now - timedelta(seconds=settings.stale_after_s)},
        },
        {"job_id": 1, "heartbeat_at": 1, "attempts": 1},
    )
    async for doc in stale:
        guard = {"heartbeat_at": doc["heartbeat_at"]}  # untouched since we looked
        if doc.get("attempts", 0) >= settings.job_max_attempts:
            if await fail(jobs, doc["job_id"], WORKER_LOST, "WORKER_LOST", guard=guard):
                counts["lost"] += 1
                log.warning("job %s: failed, worker lost %d times", doc["job_id"], doc["attempts"])
        elif await release(jobs, doc["job_id"], guard=guard):
            counts["released"] += 1
            log.warning("job %s: worker lost, released to be resumed", doc["job_id"])
            await _ring(queue, doc["job_id"], f"released-{doc.get('attempts', 0)}")

    forgotten = jobs.find(
        {
            "status": JobStatus.pending.value,
            "rung_at": {"$lt": now - timedelta(seconds=settings.pending_grace_s)},
        },
        {"job_id": 1, "rung_at": 1},
    )
    async for doc in forgotten:
        if await mark_rung(jobs, doc["job_id"], doc["rung_at"]):
            counts["rung"] += 1
            await _ring(queue, doc["job_id"], f"swept-{int(now.timestamp() * 1000)}")
    if any(counts.values()):
        log.info("sweep: %s", counts)
    return counts


async def _ring(queue: Any, job_id: str, tag: str) -> None:
    await queue.enqueue_job(PROCESS_FUNCTION, job_id, _job_id=arq_job_id(job_id, tag))
