"""Cancelling and deleting a job."""

from __future__ import annotations

import contextlib
import logging

from service.domain import lifecycle
from service.domain.errors import Conflict, NotFound, PageStoreError
from service.domain.job import JobStatus, utcnow
from service.jobs.context import Context
from service.store.discard import discard
from service.store.documents import JobDoc
from service.store.failure import is_transient

log = logging.getLogger("service.jobs")


async def cancel_job(ctx: Context, job_id: str, user_id: str, fields: dict[str, int]) -> JobDoc:
    """Cancel a pending or processing job at once; 409 when it already finished.

    A run holding the job learns it at its next write and discards what it wrote. A job that no
    run holds (pending: never started, or handed back) has its output discarded here; when the
    page store cannot be reached, the sweeper does it later.
    """
    store = ctx.store
    done = await store.jobs.apply(
        lifecycle.cancel(job_id, user_id, utcnow()), {**fields, "lease_id": 1}
    )
    if done is not None:
        if done.get("lease_id") is None:
            try:
                await discard(store, job_id)
            except Exception as exc:  # the job is cancelled: the sweeper cleans up later
                if not (isinstance(exc, PageStoreError) or is_transient(exc)):
                    raise
                log.warning("job %s: cancelled; output left to the sweeper (%s)", job_id, exc)
        return done
    current = await store.jobs.get_owned(job_id, user_id, {"status": 1})
    if current is None:
        raise NotFound(f"Job {job_id} not found")
    raise Conflict(f"Job {job_id} is already {current['status']} and cannot be cancelled")


async def delete_job(ctx: Context, job_id: str, user_id: str) -> None:
    """Cancel if still active, then remove the job (a completed job's chapter stays).

    A job that ended without a chapter leaves a tombstone (``service/store/tombstones.py``),
    written before anything goes, and has its output removed before the job itself: once the job
    is gone nothing else could find it. A run still writing removes what it wrote after that
    when it stops; should it die first, the sweeper does, from the tombstone.
    """
    store = ctx.store
    with contextlib.suppress(Conflict):
        await cancel_job(ctx, job_id, user_id, {"_id": 0, "job_id": 1})
    job = await store.jobs.get_owned(
        job_id, user_id, {"status": 1, "chapter_id": 1, "discard_pending": 1}
    )
    if job is None:
        raise NotFound(f"Job {job_id} not found")
    chapter_id = job.get("chapter_id")
    # A job never claimed has no chapter id, and none can claim it now that it is cancelled.
    if job["status"] != JobStatus.completed.value and chapter_id:
        await store.tombstones.bury(job_id, user_id, chapter_id, utcnow())
    if job.get("discard_pending"):
        await discard(store, job_id)
    if not await store.jobs.delete(job_id, user_id):
        raise NotFound(f"Job {job_id} not found")
