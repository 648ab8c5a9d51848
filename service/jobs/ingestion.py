"""The ingestion-status contract's view of a job: the job and how many chunks it made.

That contract lets any authenticated user read any job; here, as everywhere, only the job's
owner can, and another user's job is "Job not found".
"""

from __future__ import annotations

from service.domain.errors import NotFound
from service.jobs.access import Others, caller_job
from service.jobs.context import Context
from service.store.documents import JobDoc
from service.store.reader import JobReader


async def ingestion_job(
    ctx: Context, reader: JobReader, raw_job_id: str, user_id: str
) -> tuple[JobDoc, int]:
    """The caller's job (coalesced read) and its chunk count."""
    job = await caller_job(
        raw_job_id, user_id, reader=reader, others=Others.hide,
        missing=lambda _: NotFound("Job not found"),
    )  # fmt: skip
    return job, await ctx.store.chunks.count(job["job_id"])
