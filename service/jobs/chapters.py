"""Chapters and pages: a chapter, its pages with their text, a job's pages while it runs, and
deleting a chapter. Someone else's chapter is "not found", as if it did not exist."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
from dataclasses import dataclass
from typing import Any

from service.domain import lifecycle
from service.domain.errors import NotFound
from service.domain.job import utcnow
from service.domain.words import Word, decode_words
from service.jobs.access import Others, caller_job
from service.jobs.context import Context
from service.store.documents import JobDoc

Doc = dict[str, Any]
# A page number past any chapter's last page (MAX_PAGES is at most 50,000).
MAX_PAGE_NUMBER = 1_000_000


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
    ctx: Context,
    book_id: str,
    chapter_id: str,
    user_id: str,
    *,
    offset: int,
    limit: int,
    text: bool = True,
) -> tuple[list[Doc], int]:
    """A page of the caller's chapter's pages, with their text unless ``text`` is false, and how
    many it has."""
    chapter = await get_chapter(ctx, book_id, chapter_id, user_id, {"job_id": 1})
    return await ctx.store.chapters.chapter_pages(
        chapter_id, chapter["job_id"], offset=offset, limit=limit, text=text
    )


async def delete_chapter(ctx: Context, book_id: str, chapter_id: str, user_id: str) -> None:
    """Remove the caller's chapter, its pages and its images; the job that made it (if its
    record is still there) then says its chapter was deleted."""
    job_id = await ctx.store.chapters.delete_chapter(chapter_id, book_id, user_id)
    if job_id is None:
        raise _missing(chapter_id)
    await ctx.store.jobs.apply(lifecycle.chapter_deleted(job_id, user_id, utcnow()))


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


@dataclass(frozen=True, slots=True)
class PageLink:
    """A link of a page: its box in the image's pixels, and a page (from 1) or a URI."""

    x0: int
    y0: int
    x1: int
    y1: int
    page: int | None
    uri: str | None


@dataclass(frozen=True, slots=True)
class PageWords:
    """A page's positioned words and links, the image size they refer to, and a digest of
    them (the ETag)."""

    width: int
    height: int
    words: list[Word]
    links: list[PageLink]
    digest: str


def _links(docs: list[Doc]) -> list[PageLink]:
    links = []
    for doc in docs:
        x0, y0, x1, y1 = (int(v) for v in doc["box"])
        page, uri = doc.get("page"), doc.get("uri")
        links.append(PageLink(x0, y0, x1, y1, int(page) if page is not None else None, uri))
    return links


async def page_words(
    ctx: Context, book_id: str, chapter_id: str, page_number: int, user_id: str
) -> PageWords:
    """The words of page ``page_number`` (from 1) of the caller's chapter."""
    chapter = await get_chapter(ctx, book_id, chapter_id, user_id, {"job_id": 1})
    found = None
    if 1 <= page_number <= MAX_PAGE_NUMBER:
        found = await ctx.store.chapters.page_words(chapter_id, chapter["job_id"], page_number - 1)
    if found is None:
        raise NotFound(f"Page {page_number} of chapter {chapter_id[:64]} not found")
    blob = bytes(found.get("words") or b"")
    links = _links(found.get("links") or [])
    digest = hashlib.sha256(blob)
    if links:
        digest.update(repr([dataclasses.astuple(link) for link in links]).encode())
    return PageWords(
        width=int(found.get("words_width") or 0),
        height=int(found.get("words_height") or 0),
        words=decode_words(blob) if blob else [],
        links=links,
        digest=digest.hexdigest()[:32],
    )
