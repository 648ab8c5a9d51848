"""Every collection the service reads or writes, reached one way: ``store.collections.jobs``.

One ``Collections`` is made per process from its database (``service/store/database.py``) and
handed to each part of the store; nothing looks a collection up by name anywhere else.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase

Doc = dict[str, Any]

JOBS = "pdf_chapter_jobs"
CHAPTERS = "book_chapters"
PAGES = "chapter_pages"
CHUNKS = "document_chunks"
LOCKS = "locks"
WORKERS = "workers"
TOMBSTONES = "tombstones"
# Every byte a user stores besides uploads, one document per thing, and their sum per user
# (service/store/usage.py).
HOLDINGS = "holdings"
USAGE = "usage"
# GridFS buckets: uploaded PDFs, and page images when PAGE_STORE=gridfs.
UPLOADS_BUCKET = "pdf_files"
PAGE_IMAGES_BUCKET = "page_images"


@dataclass(frozen=True, slots=True)
class Collections:
    """The service's database and its collections."""

    db: AsyncDatabase[Doc]
    jobs: AsyncCollection[Doc]
    chapters: AsyncCollection[Doc]
    pages: AsyncCollection[Doc]  # a chapter's pages: text, images, positioned words
    chunks: AsyncCollection[Doc]  # retrieval chunks: passages of a chapter and their vectors
    locks: AsyncCollection[Doc]
    workers: AsyncCollection[Doc]
    tombstones: AsyncCollection[Doc]
    holdings: AsyncCollection[Doc]
    usage: AsyncCollection[Doc]
    upload_files: AsyncCollection[Doc]
    upload_chunks: AsyncCollection[Doc]
    image_files: AsyncCollection[Doc]
    image_chunks: AsyncCollection[Doc]

    @classmethod
    def of(cls, db: AsyncDatabase[Doc]) -> Collections:
        return cls(
            db=db,
            jobs=db[JOBS],
            chapters=db[CHAPTERS],
            pages=db[PAGES],
            chunks=db[CHUNKS],
            locks=db[LOCKS],
            workers=db[WORKERS],
            tombstones=db[TOMBSTONES],
            holdings=db[HOLDINGS],
            usage=db[USAGE],
            upload_files=db[f"{UPLOADS_BUCKET}.files"],
            upload_chunks=db[f"{UPLOADS_BUCKET}.chunks"],
            image_files=db[f"{PAGE_IMAGES_BUCKET}.files"],
            image_chunks=db[f"{PAGE_IMAGES_BUCKET}.chunks"],
        )
