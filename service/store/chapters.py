"""The chapter a job makes: one ``book_chapters`` document, one ``document_chunks`` per page, and
the pages' images in the page store (GridFS or S3) under ``chapters/{chapter_id}/``; and every
read of them (a chapter, its pages, the chunk listings).

Writes are idempotent, so a retried job converges on the same chapter: the chapter id is fixed
on the job at its first claim, pages are upserted on the unique ``(job_id, chunk_index)`` index,
and the chapter is inserted once per job.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from pymongo import UpdateOne
from pymongo.errors import DuplicateKeyError

from service.domain.chapter import ContentMode, slugify, unique_slug
from service.domain.job import new_id, utcnow
from service.domain.page_keys import chapter_prefix, text_key
from service.store.collections import Collections
from service.store.page_images.metered import MeteredPageStore
from service.store.usage import Holding

Doc = dict[str, Any]


@dataclass(frozen=True, slots=True)
class StoredPage:
    """A page whose images (if any) are in the page store: what its chunk records."""

    index: int  # 0-based
    text: str
    has_text: bool = True
    image: Doc | None = None  # {key, width, height}
    thumbnail: Doc | None = None
    warnings: tuple[str, ...] = ()


PAGE_FIELDS = {"_id": 0, "chunk_index": 1, "image": 1, "thumbnail": 1, "has_text": 1}
# A chunk in the chunk-listing contract's list: its content cut short by MongoDB before it is sent.
CONTENT_PREVIEW_CHARS = 500
PREVIEW_FIELDS = {
    "job_id": 1,
    "chunk_index": 1,
    "metadata": 1,
    "created_at": 1,
    "updated_at": 1,
    "content": {"$substrCP": ["$content", 0, CONTENT_PREVIEW_CHARS]},
}


def text_holdings(chapter_id: str, pages: list[StoredPage]) -> list[Holding]:
    """What the pages' chunks store of text (content and warnings, as UTF-8), as the holdings
    their owner's quota counts, under the chapter's prefix (given back with it)."""
    return [
        Holding(
            text_key(chapter_id, page.index + 1),
            len(page.text.encode()) + sum(len(warning.encode()) for warning in page.warnings),
            "text",
        )
        for page in pages
    ]


def page_entry(doc: Doc) -> Doc:
    """A chunk as the chapter's page list shows it."""
    return {
        "page_number": doc["chunk_index"] + 1,
        "image": doc.get("image"),
        "thumbnail": doc.get("thumbnail"),
        "has_text": doc.get("has_text", True),
    }


class ChapterStore:
    """``book_chapters`` and ``document_chunks``, and the images of their pages."""

    def __init__(self, collections: Collections, images: MeteredPageStore) -> None:
        self.chapters = collections.chapters
        self.chunks = collections.chunks
        self.images = images

    # --- Writes of a job's run ----------------------------------------------------------------

    async def write_pages(
        self, job: Doc, chapter_id: str, source_file: str, total_pages: int, batch: list[StoredPage]
    ) -> None:
        """Upsert a batch of pages in one round trip (a retried page replaces its own chunk).
        Their text counts in the owner's quota: the run takes it (``text_holdings``)."""
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
            await self.chunks.bulk_write(operations, ordered=False)

    async def create_chapter(
        self,
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
        pages = await self.stored_pages(job["job_id"])
        where = {"user_id": job["user_id"], "book_id": job["book_id"]}
        base = job.get("slug") or slugify(title)
        taken = {
            doc["slug"]
            async for doc in self.chapters.find(
                {**where, "slug": {"$regex": f"^{re.escape(base)}"}}, {"slug": 1}
            )
        }
        while True:
            slug = unique_slug(base, taken)
            try:
                await self.chapters.update_one(
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

    # --- A job's pages ---------------------------------------------------------------------------

    async def count_pages(self, job_id: str) -> int:
        """How many of the job's pages are stored."""
        return await self.chunks.count_documents({"job_id": job_id})

    async def stored_pages(self, job_id: str, *, offset: int = 0, limit: int = 0) -> list[Doc]:
        """The job's pages stored so far, in order (``limit`` 0: all of them)."""
        found = self.chunks.find({"job_id": job_id}, PAGE_FIELDS).sort("chunk_index", 1)
        return [page_entry(doc) async for doc in found.skip(offset).limit(limit)]

    # --- Chapters --------------------------------------------------------------------------------

    async def owned(
        self, book_id: str, chapter_id: str, user_id: str, fields: dict[str, int] | None = None
    ) -> Doc | None:
        """The user's chapter (``fields``: a projection; the whole document, pages included,
        runs to hundreds of KB for a long chapter), or None."""
        doc: Doc | None = await self.chapters.find_one(
            {"chapter_id": chapter_id, "book_id": book_id, "user_id": user_id},
            {"_id": 0, **(fields or {})},
        )
        return doc

    async def of_job(self, job_id: str) -> Doc | None:
        """The chapter a job made, if it made one (its id only)."""
        doc: Doc | None = await self.chapters.find_one({"job_id": job_id}, {"chapter_id": 1})
        return doc

    async def chapter_pages(
        self, chapter_id: str, job_id: str, *, offset: int, limit: int
    ) -> tuple[list[Doc], int]:
        """A page of a chapter's pages with their text, in order, and how many it has."""
        query = {"chapter_id": chapter_id, "job_id": job_id}
        fields = {"content": 1, "chunk_index": 1, "image": 1, "thumbnail": 1, "has_text": 1}
        found = self.chunks.find(query, fields).sort("chunk_index", 1).skip(offset).limit(limit)
        docs: list[Doc] = await found.to_list()
        return docs, await self.chunks.count_documents(query)

    async def has_chapter(self, user_id: str, book_id: str, chapter_id: str) -> bool:
        query = {"user_id": user_id, "book_id": book_id, "chapter_id": chapter_id}
        return bool(await self.chapters.count_documents(query, limit=1))

    async def slug_taken(self, user_id: str, book_id: str, slug: str) -> bool:
        query = {"user_id": user_id, "book_id": book_id, "slug": slug}
        return bool(await self.chapters.count_documents(query, limit=1))

    async def delete_chapter(self, chapter_id: str, book_id: str, user_id: str) -> bool:
        """Remove the user's chapter, its pages and its images; False when there is none."""
        chapter = await self.chapters.find_one(
            {"chapter_id": chapter_id, "book_id": book_id, "user_id": user_id}, {"job_id": 1}
        )
        if chapter is None:
            return False
        # Images first (and everything the chapter held given back): a chapter whose images
        # failed to go can be deleted again.
        await self.images.delete_prefix(chapter_prefix(chapter_id))
        await self.chunks.delete_many({"chapter_id": chapter_id, "job_id": chapter["job_id"]})
        await self.chapters.delete_one({"chapter_id": chapter_id})
        return True

    # --- What a job that ends without a chapter leaves (service/store/discard.py) --------------

    async def chapter_ids_of_job(self, job_id: str) -> set[str]:
        return {doc["chapter_id"] async for doc in self.chapters.find({"job_id": job_id})}

    async def delete_job_output(self, job_id: str) -> None:
        """Every chunk and chapter of the job (its images are removed by prefix first)."""
        await self.chunks.delete_many({"job_id": job_id})
        await self.chapters.delete_many({"job_id": job_id})

    # --- The chunk-listing contract -----------------------------------------------------------

    async def count_chunks(self, job_id: str) -> int:
        return await self.chunks.count_documents({"job_id": job_id})

    async def chunk_previews(
        self, job_id: str, order: dict[str, int], offset: int, limit: int
    ) -> list[Doc]:
        """One page of a job's chunks, their content cut short by MongoDB before it is sent."""
        cursor = await self.chunks.aggregate(
            [
                {"$match": {"job_id": job_id}},
                {"$sort": order},
                {"$skip": offset},
                {"$limit": limit},
                {"$project": PREVIEW_FIELDS},
            ]
        )
        page: list[Doc] = await cursor.to_list()
        return page

    async def owned_chunk(self, chunk_id: str, user_id: str) -> Doc | None:
        doc: Doc | None = await self.chunks.find_one({"_id": chunk_id, "user_id": user_id})
        return doc
