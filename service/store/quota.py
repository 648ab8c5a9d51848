"""What a user holds against their quotas, counted in MongoDB so every API process sees the same.

- Stored bytes: the lengths of the user's uploads (GridFS ``pdf_files``) plus their page images
  (GridFS ``page_images``; a bucket nobody wrote to yet counts zero), each summed over the
  ``metadata.user_id`` + ``length`` index, so the sum reads the index alone.
- Active jobs: pending plus processing, counted on the ``user_id_status`` index.

A count and the write it guards are two operations, so two processes can both see room for one
more. Callers therefore check before they write and again after: whoever finds the limit passed
once its own write is visible undoes that write. Of two racing writers at least one sees both
writes, so the limit is never passed for good (at worst both undo, and a retry succeeds).
"""

from __future__ import annotations

import asyncio
from typing import Any

import pymongo
from pymongo import IndexModel
from pymongo.asynchronous.database import AsyncDatabase

from service.domain.errors import StorageQuotaExceeded, TooManyActiveJobs
from service.domain.job import ACTIVE_STATUSES
from service.store.documents import PdfChapterJob
from service.store.files import BUCKET as PDF_BUCKET

IMAGE_BUCKET = "page_images"
FILE_COLLECTIONS = (f"{PDF_BUCKET}.files", f"{IMAGE_BUCKET}.files")
ACTIVE = sorted(status.value for status in ACTIVE_STATUSES)
# Jobs finish at their own pace: a client refused for too many active jobs polls again this late.
ACTIVE_RETRY_AFTER_S = 30

# For indexes/spec.py: the per-user byte sums read these indexes alone (covered queries).
QUOTA_INDEXES: dict[str, list[IndexModel]] = {
    name: [
        IndexModel(
            [("metadata.user_id", pymongo.ASCENDING), ("length", pymongo.ASCENDING)],
            name="metadata_user_id_length",
        )
    ]
    for name in FILE_COLLECTIONS
}


async def _bytes_in(db: AsyncDatabase[Any], collection: str, user_id: str) -> int:
    cursor = await db[collection].aggregate(
        [
            {"$match": {"metadata.user_id": user_id}},
            {"$group": {"_id": None, "bytes": {"$sum": "$length"}}},
        ]
    )
    rows = await cursor.to_list()
    return int(rows[0]["bytes"]) if rows else 0


async def used_bytes(db: AsyncDatabase[Any], user_id: str) -> int:
    """Bytes the user stores: uploaded PDFs plus page images."""
    sums = await asyncio.gather(*(_bytes_in(db, name, user_id) for name in FILE_COLLECTIONS))
    return sum(sums)


async def room_left(db: AsyncDatabase[Any], user_id: str, quota_bytes: int) -> int:
    """Bytes the user may still store; ``StorageQuotaExceeded`` (413) when there are none."""
    used = await used_bytes(db, user_id)
    if used >= quota_bytes:
        raise StorageQuotaExceeded(used, quota_bytes)
    return quota_bytes - used


async def active_jobs(user_id: str, at_most: int) -> int:
    """The user's pending and processing jobs, counted up to ``at_most`` (the index stops there)."""
    collection = PdfChapterJob.get_pymongo_collection()
    query = {"user_id": user_id, "status": {"$in": ACTIVE}}
    return await collection.count_documents(query, limit=at_most)


async def ensure_active_slot(user_id: str, limit: int, *, created: bool = False) -> None:
    """``TooManyActiveJobs`` (429) when the user has ``limit`` active jobs (before creating one),
    or more than ``limit`` (``created``: the caller's new job is among them)."""
    allowed = limit + 1 if created else limit
    if await active_jobs(user_id, allowed) >= allowed:
        raise TooManyActiveJobs(limit, ACTIVE_RETRY_AFTER_S)
