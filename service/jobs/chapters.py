"""Chapters and pages: a chapter, its pages with their text, a job's pages while it runs, and
deleting a chapter. Someone else's chapter is "not found", as if it did not exist."""

from __future__ import annotations

import asyncio
from typing import Any

from service.domain.errors import NotFound
from service.jobs.access import Others, caller_job
from service.jobs.context import Context
from service.store.documents import JobDoc

Doc = dict[str, Any]


def _missing(chapter_id: str) -> NotFound:
    return NotFound(f"Chapter {chapter_id[:64]} not found")


async def get_chapter(
    ctx: Context, book_id: str, chapter_id: str, user_id: str, fields: dict[str, int] | None = None
) -> Doc:
    """The caller's chapter (``fields``: a projection; without one, the whole document)."""
    doc = await ctx.store.chapters.owned(book_id, chapter_id, user_id, fields)
    if doc is None:  # someone else's chapter is "not found" too: ids are not to be probed
        raise _missing(chapter_id)
    return doc


async def chapter_pages(
    ctx: Context, book_id: str, chapter_id: str, user_id: str, *, offset: int, limit: int
) -> tuple[list[Doc], int]:
    """A page of the caller's chapter's pages, with their text, and how many it has."""
    chapter = await get_chapter(ctx, book_id, chapter_id, user_id, {"job_id": 1})
    return await ctx.store.chapters.chapter_pages(
        chapter_id, chapter["job_id"], offset=offset, limit=limit
    )


async def delete_chapter(ctx: Context, book_id: str, chapter_id: str, user_id: str) -> None:
    """Remove the caller's chapter, its pages and its images."""
    if not await ctx.store.chapters.delete_chapter(chapter_id, book_id, user_id):
        raise _missing(chapter_id)


async def job_pages(
    ctx: Context, raw_job_id: str, user_id: str, *, offset: int, limit: int
) -> tuple[JobDoc, list[Doc], int]:
    """The caller's job (403 for another user's), a page of its pages stored so far, and how
    many are stored."""
    job = await caller_job(
        raw_job_id, user_id, jobs=ctx.store.jobs, fields={"pages_total": 1}, others=Others.forbid
    )
    pages, rendered = await asyncio.gather(
        ctx.store.chapters.stored_pages(job["job_id"], offset=offset, limit=limit),
        ctx.store.chapters.count_pages(job["job_id"]),
    )
    return job, pages, rendered
