"""Removing what a job that ended without a chapter wrote: its images, pages and chapter.

A job that is cancelled, fails, or is lost by the sweeper is marked ``discard_pending``
(``service/domain/lifecycle.py``) until its output is gone. Its run removes it when it stops, the
API when it deletes the job, and the sweeper what a dead run or an unreachable page store left.
"""

from __future__ import annotations

import logging

from service.domain import lifecycle
from service.domain.job import utcnow
from service.domain.page_keys import chapter_prefix
from service.store.database import Store

log = logging.getLogger("service.discard")


async def discard(
    store: Store, job_id: str, chapter_id: str | None = None, *, final: bool = True
) -> None:
    """Remove what a job wrote that ends without a chapter (cancelled, failed): every image under
    its chapter's prefix (``chapter_id``'s too: a run knows its chapter when its job is no longer
    there to say), then its chunks and its chapter if it got that far. Idempotent; a page store
    that cannot be reached raises, before anything else is removed.

    ``final`` clears ``discard_pending``: for the sweeper and the API, which discard once no run
    writes any more. A run's own discard is not final: an upload the store committed after the
    run gave up on it, or a page it wrote after another discard, is removed by the sweeper's
    pass once the job has been still for ``STALE_AFTER_S``.
    """
    job = await store.jobs.get(job_id, {"chapter_id": 1})
    chapter_ids = await store.chapters.chapter_ids_of_job(job_id)
    if job is not None and job.get("chapter_id"):
        chapter_ids.add(str(job["chapter_id"]))
    if chapter_id:
        chapter_ids.add(chapter_id)
    for each in chapter_ids:
        await store.images.delete_prefix(chapter_prefix(each))
    await store.chapters.delete_job_output(job_id)
    if final:
        await store.jobs.apply(lifecycle.discarded(job_id, utcnow()))


async def discard_or_leave(
    store: Store, job_id: str, chapter_id: str | None = None, *, final: bool = True
) -> bool:
    """``discard``, for a worker that must go on whatever happens: False (logged) when it
    failed, the job then still ``discard_pending`` for the sweeper's next pass."""
    try:
        await discard(store, job_id, chapter_id, final=final)
    except Exception as exc:
        log.warning(
            "job %s: its output could not be removed now (%s): the sweeper tries again",
            job_id, type(exc).__name__,
        )  # fmt: skip
        return False
    return True
