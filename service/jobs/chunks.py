"""The chunk-listing contract: a job's retrieval chunks, a page at a time, and one chunk whole
(its vector included).

Listing is limited per user in Redis (``list_chunks:<user_id>``); every error of these endpoints
is rendered in the contract's envelope by the route.
"""

from __future__ import annotations

import asyncio
from typing import Any

from service.domain.errors import InvalidParameter, NotFound
from service.domain.job import canonical_id
from service.jobs.access import Others, caller_job
from service.jobs.context import Context
from service.limits.rate_limit import Quota

Doc = dict[str, Any]


def _job_not_found(job_id: str) -> NotFound:
    return NotFound(f"Job with ID {job_id} not found", code="JOB_NOT_FOUND")


async def list_chunks(
    ctx: Context,
    raw_job_id: str,
    user_id: str,
    *,
    order: dict[str, int],
    offset: int,
    limit: int,
) -> tuple[Quota | None, list[Doc], int]:
    """Where the caller stands in the rate limit, one page of previews, and the job's total."""
    quota = await ctx.limiter.hit(
        f"list_chunks:{user_id}", ctx.settings.chunks_rate_limit_per_minute
    )
    job = await caller_job(
        raw_job_id,
        user_id,
        jobs=ctx.store.jobs,
        others=Others.hide,
        missing=_job_not_found,
        malformed=lambda raw: InvalidParameter("job_id", raw, "Invalid job_id format"),
    )
    chunks = ctx.store.chunks
    page, total = await asyncio.gather(
        chunks.previews(job["job_id"], order, offset, limit), chunks.count(job["job_id"])
    )
    return quota, page, total


async def get_chunk(ctx: Context, raw_chunk_id: str, user_id: str) -> Doc:
    """One of the caller's chunks, whole."""
    chunk_id = canonical_id(raw_chunk_id)
    if chunk_id is None:
        raise InvalidParameter("chunk_id", raw_chunk_id, "Invalid chunk_id format")
    doc = await ctx.store.chunks.owned(chunk_id, user_id)
    if doc is None:
        raise NotFound(f"Chunk with ID {chunk_id} not found", code="CHUNK_NOT_FOUND")
    return doc
