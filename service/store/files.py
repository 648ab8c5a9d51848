"""Uploaded PDFs in GridFS (bucket ``pdf_files``): streamed in, owned by the uploader.

An upload is checked as it streams (magic bytes, size limit) and aborted on any failure, so a
rejected upload leaves no chunks behind. Chunks are inserted as they fill (``GridWriter``), so
an upload in flight holds about one chunk of memory, never the whole file.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from gridfs.asynchronous.grid_file import AsyncGridFSBucket, AsyncGridOut
from gridfs.errors import NoFile
from pymongo.asynchronous.database import AsyncDatabase

from service.domain.errors import (
    BadRequest,
    Conflict,
    NotFound,
    PayloadTooLarge,
    UnsupportedMediaType,
)
from service.domain.job import ACTIVE_STATUSES, new_id, utcnow
from service.store.documents import PdfChapterJob
from service.store.grid_writer import GridWriter

BUCKET = "pdf_files"
PDF_MAGIC = b"%PDF-"
# The PDF header may follow a little junk; readers look for it within the first kilobyte.
MAGIC_WINDOW = 1024
CHUNK_SIZE = 255 * 1024


@dataclass(frozen=True, slots=True)
class StoredFile:
    """An uploaded PDF, as the API describes it."""

    file_id: str
    filename: str
    size_bytes: int
    sha256: str
    content_type: str
    created_at: datetime
    user_id: str


def bucket(db: AsyncDatabase[Any]) -> AsyncGridFSBucket:
    return AsyncGridFSBucket(db, bucket_name=BUCKET, chunk_size_bytes=CHUNK_SIZE)


def too_large(max_bytes: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"File exceeds the {max_bytes // (1024 * 1024)} MB upload limit")


async def store_pdf(
    db: AsyncDatabase[Any],
    *,
    user_id: str,
    filename: str,
    content_type: str,
    chunks: AsyncIterator[bytes],
    max_bytes: int,
) -> StoredFile:
    """Stream ``chunks`` into GridFS; 415 if not a PDF, 400 if empty, 413 if over ``max_bytes``."""
    file_id = new_id()
    created_at = utcnow()
    writer = GridWriter(
        db,
        BUCKET,
        file_id=file_id,
        filename=filename,
        metadata={"user_id": user_id, "content_type": content_type, "created_at": created_at},
        chunk_size=CHUNK_SIZE,
    )
    digest = hashlib.sha256()
    size = 0
    head = b""
    try:
        async for chunk in chunks:
            if not chunk:
                continue
            if len(head) < MAGIC_WINDOW:
                head += chunk[: MAGIC_WINDOW - len(head)]
                if len(head) >= MAGIC_WINDOW and PDF_MAGIC not in head:
                    raise UnsupportedMediaType("File is not a PDF")
            size += len(chunk)
            if size > max_bytes:
                raise too_large(max_bytes)
            digest.update(chunk)
            await writer.write(chunk)
        if size == 0:
            raise BadRequest("File is empty")
        if PDF_MAGIC not in head:
            raise UnsupportedMediaType("File is not a PDF")
        sha256 = digest.hexdigest()
        await writer.close({"sha256": sha256})
    except BaseException:
        await writer.abort()
        raise
    return StoredFile(file_id, filename, size, sha256, content_type, created_at, user_id)


def _stored(doc: dict[str, Any]) -> StoredFile:
    metadata = doc.get("metadata") or {}
    return StoredFile(
        file_id=doc["_id"],
        filename=doc.get("filename") or "document.pdf",
        size_bytes=doc.get("length", 0),
        sha256=metadata.get("sha256", ""),
        content_type=metadata.get("content_type", "application/pdf"),
        created_at=metadata.get("created_at") or doc["uploadDate"],
        user_id=metadata.get("user_id", ""),
    )


async def find_owned_file(db: AsyncDatabase[Any], file_id: str, user_id: str) -> StoredFile:
    """The caller's file; 404 for a missing file and for someone else's (no existence leak)."""
    doc = await db[f"{BUCKET}.files"].find_one({"_id": file_id, "metadata.user_id": user_id})
    if doc is None:
        raise NotFound(f"File {file_id[:64]} not found")
    return _stored(doc)


async def open_file(db: AsyncDatabase[Any], file_id: str) -> AsyncGridOut | None:
    """A download stream for the worker, or None when the file is gone."""
    try:
        return await bucket(db).open_download_stream(file_id)
    except NoFile:
        return None


async def delete_file(db: AsyncDatabase[Any], file_id: str) -> None:
    with contextlib.suppress(NoFile):
        await bucket(db).delete(file_id)


async def delete_owned_file(db: AsyncDatabase[Any], file_id: str, user_id: str) -> None:
    """Delete the caller's upload, its GridFS chunks included.

    404 for a missing file and for someone else's; 409 while a pending or processing job reads
    it (cancel the job first). A job created from the file after this check finds the file gone
    and fails with ``FILE_NOT_FOUND``: nothing is left half-deleted.
    """
    await find_owned_file(db, file_id, user_id)
    active = {"$in": [status.value for status in ACTIVE_STATUSES]}
    job = await PdfChapterJob.get_pymongo_collection().find_one(
        {"user_id": user_id, "file_id": file_id, "status": active}, {"job_id": 1}
    )
    if job is not None:
        raise Conflict(
            f"File {file_id[:64]} is being processed by job {job['job_id']}: "
            "cancel the job or wait for it to finish, then delete the file"
        )
    await delete_file(db, file_id)
