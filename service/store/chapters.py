"""The chapter a job makes: one ``book_chapters`` document, one ``document_chunks`` per page, and
the pages' images in the page store (GridFS or S3) under ``chapters/{chapter_id}/``.

Writes are idempotent, so a retried job converges on the same chapter: the chapter id is fixed
on the job at its first claim, pages are upserted on the unique ``(job_id, chunk_index)`` index,
and the chapter is inserted once per job.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from pymongo import UpdateOne
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

from service.domain.chapter import ContentMode, slugify, unique_slug
from service.domain.job import new_id, utcnow
from service.domain.page_keys import chapter_prefix
from service.store.documents import BookChapter, DocumentChunk
from service.store.page_images import PageStore

Doc = dict[str, Any]


def chunks() -> AsyncCollection[Doc]:
    return DocumentChunk.get_pymongo_collection()


def chapters() -> AsyncCollection[Doc]:
    return BookChapter.get_pymongo_collection()


@dataclass(frozen=True, slots=True)
class StoredPage:
    """A page whose images (if any) are in the page store: what its chunk records."""

    index: int  # 0-based
    text: str
    has_text: bool = True
    image: Doc | None = None  # {key, width, height}
    thumbnail: Doc | None = None
    warnings: tuple[str, ...] = ()


async def write_pages(
    job: Doc, chapter_id: str, source_file: str, total_pages: int, batch: list[StoredPage]
) -> None:
    """Upsert a batch of pages in one round trip (a retried page replaces its own chunk)."""
    now = utcnow()
    operations = [
        UpdateOne(
            {"job_id": job["job_id"], "chunk_index": page.index},
            {
                "$setOnInsert": {
                    "_id": new_id(),
                    "chapter_id": chapter_id,
                    "user_id": job["user_id"],
                    "created_at": now,
                    "metadata": {
                        "source_file": source_file,
                        "page_number": page.index + 1,
                        "total_pages": total_pages,
                    },
                },
                "$set": {
                    "content": page.text,
                    "has_text": page.has_text,
                    "image": page.image,
                    "thumbnail": page.thumbnail,
                    "warnings": list(page.warnings),
                    "updated_at": now,
                },
            },
            upsert=True,
        )
        for page in batch
    ]
    if operations:
        await chunks().bulk_write(operations, ordered=False)


PAGE_FIELDS = {"_id": 0, "chunk_index": 1, "image": 1, "thumbnail": 1, "has_text": 1}


def page_entry(doc: Doc) -> Doc:
    """A chunk as the chapter's page list shows it."""
    return {
        "page_number": doc["chunk_index"] + 1,
        "image": doc.get("image"),
        "thumbnail": doc.get("thumbnail"),
        "has_text": doc.get("has_text", True),
    }


async def count_pages(job_id: str) -> int:
    """How many of the job's pages are stored."""
    return await chunks().count_documents({"job_id": job_id})


async def stored_pages(job_id: str, *, offset: int = 0, limit: int = 0) -> list[Doc]:
    """The job's pages stored so far, in order (``limit`` 0: all of them)."""
    found = chunks().find({"job_id": job_id}, PAGE_FIELDS).sort("chunk_index", 1).skip(offset)
    return [page_entry(doc) async for doc in found.limit(limit)]


async def create_chapter(
    job: Doc,
    chapter_id: str,
    title: str,
    total_pages: int,
    source_filename: str,
    *,
    repaired: bool,
    pdf_key: str | None = None,
) -> None:
    """Insert the job's chapter once (a retry finds it there), under a slug free in its book:
    the one asked for, else one made from the title, suffixed ``-2``, ``-3``... when taken.
    It lists every page with its image keys (the original product's ``pages``)."""
    pages = await stored_pages(job["job_id"])
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
                        "pages": pages,
                        "pdf_key": pdf_key,
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


async def delete_chapter(chapter_id: str, book_id: str, user_id: str, store: PageStore) -> bool:
    """Remove the caller's chapter, its pages and its images; False when there is none."""
    chapter = await chapters().find_one(
        {"chapter_id": chapter_id, "book_id": book_id, "user_id": user_id}, {"job_id": 1}
    )
    if chapter is None:
        return False
    # Images first: a chapter whose images failed to go can be deleted again.
    await store.delete_prefix(chapter_prefix(chapter_id))
    await chunks().delete_many({"chapter_id": chapter_id, "job_id": chapter["job_id"]})
    await chapters().delete_one({"chapter_id": chapter_id})
    return True
