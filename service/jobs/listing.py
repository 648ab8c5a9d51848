"""The caller's jobs, newest first: by cursor (the book-jobs contract), by offset (the generic
job router), or of one uploaded file."""

from __future__ import annotations

from service.domain.cursor import decode_cursor, encode_cursor
from service.domain.job import JobStatus
from service.jobs.context import Context
from service.store.documents import JobDoc


async def jobs_page(
    ctx: Context,
    user_id: str,
    fields: dict[str, int],
    *,
    status: JobStatus | None,
    cursor: str | None,
    limit: int,
) -> tuple[list[JobDoc], str | None]:
    """Up to ``limit`` jobs after ``cursor`` (400 for a cursor we did not make), and the cursor
    of the next page (None on the last)."""
    after = decode_cursor(cursor) if cursor else None
    docs = await ctx.store.jobs.list(user_id, fields, status=status, after=after, limit=limit + 1)
    page = docs[:limit]
    next_cursor = None
    if len(docs) > limit:
        next_cursor = encode_cursor(page[-1]["created_at"], page[-1]["job_id"])
    return page, next_cursor


async def jobs_from(
    ctx: Context,
    user_id: str,
    fields: dict[str, int],
    *,
    status: JobStatus | None,
    offset: int,
    limit: int,
) -> list[JobDoc]:
    """Up to ``limit`` jobs after skipping ``offset``."""
    return await ctx.store.jobs.list(user_id, fields, status=status, offset=offset, limit=limit)


async def jobs_of_file(
    ctx: Context, user_id: str, file_id: str, fields: dict[str, int], *, limit: int
) -> list[JobDoc]:
    """The jobs of one of the caller's uploads (404 when it is not the caller's)."""
    await ctx.store.files.find_owned(file_id, user_id)
    return await ctx.store.jobs.list(user_id, fields, file_id=file_id, limit=limit)
