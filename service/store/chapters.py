"""The chapter a job makes: one ``book_chapters`` document and one ``document_chunks`` per page.

Writes are idempotent, so a retried job converges on the same chapter: the chapter id is fixed
on the job at its first claim, pages are upserted on the unique ``(job_id, chunk_index)`` index,
and the chapter is inserted once per job.
"""

from __future__ import annotations

import re
from typing import Any

from pymongo import UpdateOne
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

from service.domain.chapter import ContentMode, slugify, unique_slug
from service.domain.job import new_id, utcnow
from service.store.documents import BookChapter, DocumentChunk

Doc = dict[str, Any]


def chunks() -> AsyncCollection[Doc]:
    return DocumentChunk.get_pymongo_collection()


def chapters() -> AsyncCollection[Doc]:
    return BookChapter.get_pymongo_collection()


async def write_pages(
    job: Doc, chapter_id: str, source_file: str, total_pages: int, batch: list[tuple[int, str]]
) -> None:
    """Upsert a batch of pages in one round trip."""
    now = utcnow()
    operations = [
        UpdateOne(
            {"job_id": job["job_id"], "chunk_index": index},
            {
                "$setOnInsert": {
                    "_id": new_id(),
                    "chapter_id": chapter_id,
                    "user_id": job["user_id"],
                    "created_at": now,
                    "metadata": {
                        "source_file": source_file,
                        "page_number": index + 1,
                        "total_pages": total_pages,
                    },
                },
                "$set": {"content": text, "updated_at": now},
            },
            upsert=True,
        )
        for index, text in batch
    ]
    if operations:
        await chunks().bulk_write(operations, ordered=False)


async def create_chapter(
    job: Doc, chapter_id: str, title: str, total_pages: int, source_filename: str, *, repaired: bool
) -> None:
    """Insert the job's chapter once (a retry finds it there), under a slug free in its book:
    the one asked for, else one made from the title, suffixed ``-2``, ``-3``... when taken."""
    where = {"user_id": job["user_id"], "book_id": job["book_id"]}
    base = job.get("slug") or slugify(title)
    taken = {
        doc["slug"]
        async for doc in chapters().find(
            {**where, "slug": {"$regex": f"^{re.escape(base)}"}}, {"slug": 1}
        )
    }
    while True:
        slug = unique_slug(base, taken)
        try:
            await chapters().update_one(
                {"job_id": job["job_id"]},
                {
                    "$setOnInsert": {
                        "chapter_id": chapter_id,
                        **where,
                        "title": title,
                        "slug": slug,
                        "order_index": job.get("order_index"),
                        "parent_id": job.get("parent_id"),
                        "is_published": bool(job.get("is_published")),
                        "is_preview_free": bool(job.get("is_preview_free")),
                        "content_mode": job.get("content_mode") or ContentMode.pdf_pages.value,
                        "total_pages": total_pages,
                        "source_file_id": job["file_id"],
                        "source_filename": source_filename,
                        "repaired": repaired,
                        "created_at": utcnow(),
                    }
                },
                upsert=True,
            )
            return
        except DuplicateKeyError as exc:
            if "slug" not in (exc.details or {}).get("keyPattern", {}):
                return  # another run of this job inserted the chapter first
            taken.add(slug)


async def discard(job_id: str) -> None:
    """Remove what a cancelled job wrote: its pages and its chapter. Idempotent."""
    await chunks().delete_many({"job_id": job_id})
    await chapters().delete_many({"job_id": job_id})
