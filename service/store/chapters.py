"""The chapter a job makes: one ``book_chapters`` document, one ``chapter_pages`` document per
page, and the pages' images in the page store (GridFS or S3) under ``chapters/{chapter_id}/``;
and every read of them (a chapter, its pages, a page's words). Retrieval chunks are the
search index's (``service/store/chunks.py``).

Writes are idempotent, so a retried job converges on the same chapter: the chapter id is fixed
on the job at its first claim, pages are upserted on the unique ``(job_id, page_index)`` index,
and the chapter is inserted once per job.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bson import Binary
from pymongo import ReturnDocument, UpdateOne
from pymongo.errors import DuplicateKeyError
from pymongo.read_concern import ReadConcern

from service.domain.chapter import ContentMode, slugify, unique_slug
from service.domain.indexing import IndexWrite, SearchStatus
from service.domain.job import new_id, utcnow
from service.domain.page_keys import chapter_prefix, text_key
from service.store.collections import Collections
from service.store.page_images.metered import MeteredPageStore
from service.store.usage import Holding

Doc = dict[str, Any]
# A page's link: its box in the page image's pixels, and a page number (from 1) or a URI.
Link = tuple[int, int, int, int, int | None, str | None]


def link_doc(link: Link) -> Doc:
    """A link as ``chapter_pages`` keeps it: ``{box: [x0, y0, x1, y1], page}`` or ``{box, uri}``."""
    x0, y0, x1, y1, page, uri = link
    return (
        {"box": [x0, y0, x1, y1], "page": page}
        if page is not None
        else {
            "box": [x0, y0, x1, y1],
            "uri": uri,
        }
    )


@dataclass(frozen=True, slots=True)
class StoredPage:
    """A page whose images (if any) are in the page store: what its page document records."""

    index: int  # 0-based
    text: str
    has_text: bool = True
    image: Doc | None = None  # {key, width, height}
    thumbnail: Doc | None = None
    warnings: tuple[str, ...] = ()
    text_source: str = "pdf"  # pdf | ocr | none
    ocr_confidence: float | None = None
    rotation: int = 0
    words: bytes = b""  # service/domain/words.py's compact form
    words_width: int = 0
    words_height: int = 0
    error: str | None = None  # MuPDF could not read the page: recorded on the job too
    links: tuple[Link, ...] = ()


# What a page list entry is made of (a page's text and words stay behind).
PAGE_FIELDS = {
    "_id": 0,
    "page_index": 1,
    "image": 1,
    "thumbnail": 1,
    "has_text": 1,
    "text_source": 1,
    "ocr_confidence": 1,
}


# ``text_holdings``' figure for a stored page document, as a projection MongoDB computes.
TEXT_BYTES: Doc = {
    "$add": [
        {"$strLenBytes": {"$ifNull": ["$content", ""]}},
        {
            "$sum": {
                "$map": {
                    "input": {"$ifNull": ["$warnings", []]},
                    "in": {"$strLenBytes": "$$this"},
                }
            }
        },
        {"$binarySize": {"$ifNull": ["$words", ""]}},
    ]
}


def text_holdings(chapter_id: str, pages: list[StoredPage]) -> list[Holding]:
    """What the pages' documents store of text (content and warnings, as UTF-8, and the
    positioned words' compact form), as the holdings their owner's quota counts, under the
    chapter's prefix (given back with it)."""
    return [
        Holding(
            text_key(chapter_id, page.index + 1),
            len(page.text.encode())
            + sum(len(warning.encode()) for warning in page.warnings)
            + len(page.words),
            "text",
        )
        for page in pages
    ]


def page_entry(doc: Doc) -> Doc:
    """A page document as the chapter's page list shows it."""
    has_text = doc.get("has_text", True)
    return {
        "page_number": doc["page_index"] + 1,
        "image": doc.get("image"),
        "thumbnail": doc.get("thumbnail"),
        "has_text": has_text,
        # Pages stored before OCR existed read their text from the PDF (or had none).
        "text_source": doc.get("text_source") or ("pdf" if has_text else "none"),
        "ocr_confidence": doc.get("ocr_confidence"),
    }


class ChapterStore:
    """``book_chapters`` and ``chapter_pages``, and the images of their pages."""

    def __init__(self, collections: Collections, images: MeteredPageStore) -> None:
        self.chapters = collections.chapters
        self.pages = collections.pages
        self.chunks = collections.chunks
        self.images = images

    # --- Writes of a job's run ----------------------------------------------------------------

    async def write_pages(
        self, job: Doc, chapter_id: str, source_file: str, total_pages: int, batch: list[StoredPage]
    ) -> None:
        """Upsert a batch of pages in one round trip (a retried page replaces its own).
        Their text counts in the owner's quota: the run takes it (``text_holdings``)."""
        now = utcnow()
        operations = [
            UpdateOne(
                {"job_id": job["job_id"], "page_index": page.index},
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
                        "text_source": page.text_source,
                        "ocr_confidence": page.ocr_confidence,
                        "rotation": page.rotation,
                        "words": Binary(page.words),
                        "words_width": page.words_width,
                        "words_height": page.words_height,
                        "error": page.error,
                        "links": [link_doc(link) for link in page.links],
                        "updated_at": now,
                    },
                },
                upsert=True,
            )
            for page in batch
        ]
        if operations:
            await self.pages.bulk_write(operations, ordered=False)

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
        outline: Sequence[tuple[int, str, int]] = (),
    ) -> None:
        """Insert the job's chapter once (a retry finds it there), under a slug free in its book:
        the one asked for, else one made from the title, suffixed ``-2``, ``-3``... when taken.
        It lists every page with its image keys (the original product's ``pages``) and keeps
        the PDF's outline (``[level, title, page]``)."""
        pages = await self.stored_pages(job["job_id"])
        now = utcnow()
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
                            "outline": [list(entry) for entry in outline],
                            "ocr_pages": sum(p["text_source"] == "ocr" for p in pages),
                            "pages_without_text": sum(p["text_source"] == "none" for p in pages),
                            # Indexed for search after it is created, on its own schedule.
                            "search": {
                                "status": SearchStatus.pending.value,
                                "requested_at": now,
                                "attempts": 0,
                            },
                            "created_at": now,
                        }
                    },
                    upsert=True,
                )
                return
            except DuplicateKeyError as exc:
                if "slug" not in (exc.details or {}).get("keyPattern", {}):
                    return  # another run of this job inserted the chapter first
                taken.add(slug)

    async def stored_for_resume(self, job_id: str) -> list[Doc]:
        """Every page of the job stored so far, as a resumed run weighs it: its index, the keys
        of the images it names, its warnings and error, and what its text holding counts
        (``text_bytes``, computed by MongoDB: the text itself stays there).

        Read at majority: a page a failover could still roll back is not counted as stored (the
        run would skip it and the rollback would take it away); a page counted here survives the
        loss of any one member."""
        majority = self.pages.with_options(read_concern=ReadConcern("majority"))
        fields: Doc = {"_id": 0, "page_index": 1, "image.key": 1, "thumbnail.key": 1}
        fields |= {"text_source": 1, "warnings": 1, "error": 1, "text_bytes": TEXT_BYTES}
        found = majority.find({"job_id": job_id}, fields)
        return [doc async for doc in found]

    # --- A job's pages ---------------------------------------------------------------------------

    async def count_pages(self, job_id: str) -> int:
        """How many of the job's pages are stored."""
        return await self.pages.count_documents({"job_id": job_id})

    async def count_ocr_pages(self, job_id: str) -> int:
        """How many of the job's stored pages were read by OCR."""
        return await self.pages.count_documents({"job_id": job_id, "text_source": "ocr"})

    async def stored_pages(self, job_id: str, *, offset: int = 0, limit: int = 0) -> list[Doc]:
        """The job's pages stored so far, in order (``limit`` 0: all of them)."""
        found = self.pages.find({"job_id": job_id}, PAGE_FIELDS).sort("page_index", 1)
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
        self, chapter_id: str, job_id: str, *, offset: int, limit: int, text: bool = True
    ) -> tuple[list[Doc], int]:
        """A page of a chapter's pages (with their text unless ``text`` is false), in order, and
        how many it has."""
        query = {"chapter_id": chapter_id, "job_id": job_id}
        fields = {**PAGE_FIELDS, "_id": 1, **({"content": 1} if text else {})}
        found = self.pages.find(query, fields).sort("page_index", 1).skip(offset).limit(limit)
        docs: list[Doc] = await found.to_list()
        return docs, await self.pages.count_documents(query)

    async def thumbnails(self, pages: Sequence[tuple[str, int]]) -> dict[tuple[str, int], Doc]:
        """The thumbnail refs of ``(chapter id, page index)`` pages that have one."""
        if not pages:
            return {}
        found = self.pages.find(
            {"$or": [{"chapter_id": chapter, "page_index": index} for chapter, index in pages]},
            {"_id": 0, "chapter_id": 1, "page_index": 1, "thumbnail": 1},
        )
        return {
            (doc["chapter_id"], doc["page_index"]): doc["thumbnail"]
            async for doc in found
            if doc.get("thumbnail")
        }

    async def page_words(self, chapter_id: str, job_id: str, page_index: int) -> Doc | None:
        """A page's positioned words (the compact form), its links, and the image size they
        refer to."""
        doc: Doc | None = await self.pages.find_one(
            {"chapter_id": chapter_id, "job_id": job_id, "page_index": page_index},
            {"_id": 0, "words": 1, "words_width": 1, "words_height": 1, "links": 1},
        )
        return doc

    async def has_chapter(self, user_id: str, book_id: str, chapter_id: str) -> bool:
        query = {"user_id": user_id, "book_id": book_id, "chapter_id": chapter_id}
        return bool(await self.chapters.count_documents(query, limit=1))

    async def slug_taken(self, user_id: str, book_id: str, slug: str) -> bool:
        query = {"user_id": user_id, "book_id": book_id, "slug": slug}
        return bool(await self.chapters.count_documents(query, limit=1))

    async def delete_chapter(self, chapter_id: str, book_id: str, user_id: str) -> str | None:
        """Remove the user's chapter, its pages and its images: the id of the job that made it,
        or None when there is no such chapter."""
        chapter = await self.chapters.find_one(
            {"chapter_id": chapter_id, "book_id": book_id, "user_id": user_id}, {"job_id": 1}
        )
        if chapter is None:
            return None
        # Images first (and everything the chapter held given back): a chapter whose images
        # failed to go can be deleted again.
        await self.images.delete_prefix(chapter_prefix(chapter_id))
        await self.chunks.delete_many({"chapter_id": chapter_id, "job_id": chapter["job_id"]})
        await self.pages.delete_many({"chapter_id": chapter_id, "job_id": chapter["job_id"]})
        await self.chapters.delete_one({"chapter_id": chapter_id})
        return str(chapter["job_id"])

    # --- What a job that ends without a chapter leaves (service/store/discard.py) --------------

    async def chapter_ids_of_job(self, job_id: str) -> set[str]:
        return {doc["chapter_id"] async for doc in self.chapters.find({"job_id": job_id})}

    async def delete_job_output(self, job_id: str) -> None:
        """Every page, chunk and chapter of the job (its images are removed by prefix first)."""
        await self.chunks.delete_many({"job_id": job_id})
        await self.pages.delete_many({"job_id": job_id})
        await self.chapters.delete_many({"job_id": job_id})

    # --- The search index's state (service/domain/indexing.py) --------------------------------

    async def apply_index(
        self, write: IndexWrite, projection: dict[str, int] | None = None
    ) -> Doc | None:
        """Apply one index transition as one guarded atomic update: the chapter after it, or
        None when its guard no longer held (another lease, another status)."""
        doc: Doc | None = await self.chapters.find_one_and_update(
            write.filter,
            write.update,
            projection=projection or {"_id": 0, "chapter_id": 1, "job_id": 1, "search": 1},
            return_document=ReturnDocument.AFTER,
            sort=[("search.requested_at", 1)],  # claims: the longest waiting first
        )
        return doc

    async def request_index(self, write: IndexWrite) -> int:
        """Mark every chapter the request matches pending; how many."""
        return (await self.chapters.update_many(write.filter, write.update)).modified_count

    async def page_texts(self, job_id: str) -> list[tuple[int, str]]:
        """The job's pages' text, in order: ``(page number, text)``."""
        found = self.pages.find({"job_id": job_id}, {"_id": 0, "page_index": 1, "content": 1})
        return [
            (doc["page_index"] + 1, doc.get("content") or "")
            async for doc in found.sort("page_index", 1)
        ]

    def stale_indexing(self, stale_before: datetime) -> AsyncIterator[Doc]:
        """Chapters being indexed whose heartbeat is older than ``stale_before``."""
        return aiter(
            self.chapters.find(
                {
                    "search.status": SearchStatus.indexing.value,
                    "search.heartbeat_at": {"$lt": stale_before},
                },
                {"_id": 0, "chapter_id": 1, "job_id": 1, "search": 1},
            )
        )

    async def without_terms(self, analyzer: str, user_id: str | None = None) -> list[Doc]:
        """Ready chapters whose chunks have no term vectors of ``analyzer`` (indexed before
        they were, or by another analysis)."""
        query: Doc = {"search.status": SearchStatus.ready.value, "search.terms": {"$ne": analyzer}}
        if user_id is not None:
            query["user_id"] = user_id
        found = self.chapters.find(query, {"_id": 0, "chapter_id": 1, "search.indexed_at": 1})
        return [doc async for doc in found]

    async def searchable(
        self, user_id: str, *, book_id: str | None = None, chapter_ids: Sequence[str] | None = None
    ) -> list[Doc]:
        """The user's indexed chapters (of one book, or some chapters): what search reads."""
        query: Doc = {"user_id": user_id, "search.status": SearchStatus.ready.value}
        if book_id is not None:
            query["book_id"] = book_id
        if chapter_ids is not None:
            query["chapter_id"] = {"$in": list(chapter_ids)}
        found = self.chapters.find(
            query,
            {
                "_id": 0,
                "chapter_id": 1,
                "job_id": 1,
                "book_id": 1,
                "title": 1,
                "search.model": 1,
                "search.terms": 1,
                "search.indexed_at": 1,
            },
        )
        return [doc async for doc in found]

    async def owned_ids(self, user_id: str, chapter_ids: Sequence[str]) -> set[str]:
        """Which of ``chapter_ids`` are the user's chapters."""
        found = self.chapters.find(
            {"user_id": user_id, "chapter_id": {"$in": list(chapter_ids)}}, {"chapter_id": 1}
        )
        return {doc["chapter_id"] async for doc in found}

    async def index_counts(self) -> dict[str, int]:
        """Chapters by index status, over every user (``/metrics``)."""
        counts = {status.value: 0 for status in SearchStatus if status is not SearchStatus.stale}
        cursor = await self.chapters.aggregate(
            [
                {"$match": {"search.status": {"$exists": True}}},
                {"$group": {"_id": "$search.status", "n": {"$sum": 1}}},
            ]
        )
        async for row in cursor:
            counts[str(row["_id"])] = int(row["n"])
        return counts

    async def oldest_pending_index(self) -> datetime | None:
        """When the longest-waiting pending chapter was asked to be indexed (the index lag)."""
        doc = await self.chapters.find_one(
            {"search.status": SearchStatus.pending.value},
            {"_id": 0, "search.requested_at": 1},
            sort=[("search.requested_at", 1)],
        )
        found: datetime | None = (doc or {}).get("search", {}).get("requested_at")
        return found

    async def migrate_legacy_pages(self) -> int:
        """Move pages stored before they had their own collection (one ``document_chunks``
        document per page, without ``page_start``) to ``chapter_pages``; how many moved.

        Server-side (``$merge`` on the unique ``(job_id, page_index)`` index, so a page already
        there is kept), then the old documents are removed. Idempotent.
        """
        legacy = {"page_start": {"$exists": False}, "chunk_index": {"$exists": True}}
        moved = await self.chunks.count_documents(legacy)
        if not moved:
            return 0
        await (
            await self.chunks.aggregate(
                [
                    {"$match": legacy},
                    {"$set": {"page_index": "$chunk_index"}},
                    {"$unset": "chunk_index"},
                    {
                        "$merge": {
                            "into": self.pages.name,
                            "on": ["job_id", "page_index"],
                            "whenMatched": "keepExisting",
                            "whenNotMatched": "insert",
                        }
                    },
                ]
            )
        ).to_list()
        await self.chunks.delete_many(legacy)
        return moved
