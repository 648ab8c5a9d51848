"""Uploaded PDFs in GridFS (bucket ``pdf_files``): streamed in, owned by the uploader.

An upload is checked as it streams (magic bytes, size limit) and aborted on any failure, so a
rejected upload leaves no chunks behind. Chunks are inserted as they fill (``GridWriter``), so
an upload in flight holds about one chunk of memory, never the whole file; a file is read back
the same way (``grid_reader.py``).
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from gridfs.asynchronous.grid_file import AsyncGridFSBucket
from gridfs.errors import NoFile

from service.domain.errors import BadRequest, NotFound, PayloadTooLarge, UnsupportedMediaType
from service.domain.job import new_id, utcnow
from service.store.collections import UPLOADS_BUCKET, Collections
from service.store.grid_reader import read_chunks
from service.store.grid_writer import GridWriter

BUCKET = UPLOADS_BUCKET
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


def too_large(max_bytes: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"File exceeds the {max_bytes // (1024 * 1024)} MB upload limit")


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


class FileStore:
    """Uploaded PDFs in GridFS (bucket ``pdf_files``)."""

    def __init__(self, collections: Collections) -> None:
        self._collections = collections
        self._bucket = AsyncGridFSBucket(
            collections.db, bucket_name=BUCKET, chunk_size_bytes=CHUNK_SIZE
        )

    async def store_pdf(
        self,
        *,
        user_id: str,
        filename: str,
        content_type: str,
        chunks: AsyncIterator[bytes],
        max_bytes: int,
    ) -> StoredFile:
        """Stream ``chunks`` into GridFS; 415 if not a PDF, 400 if empty, 413 past ``max_bytes``."""
        file_id = new_id()
        created_at = utcnow()
        writer = GridWriter(
            self._collections.upload_files,
            self._collections.upload_chunks,
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

    async def find_owned(self, file_id: str, user_id: str) -> StoredFile:
        """The caller's file; 404 for a missing file and for someone else's (no existence leak)."""
        doc = await self._collections.upload_files.find_one(
            {"_id": file_id, "metadata.user_id": user_id}
        )
        if doc is None:
            raise NotFound(f"File {file_id[:64]} not found")
        return _stored(doc)

    async def filename_of(self, file_id: str) -> str:
        """The uploaded file's cleaned name (``document.pdf`` when the file is gone)."""
        doc = await self._collections.upload_files.find_one({"_id": file_id}, {"filename": 1})
        return str((doc or {}).get("filename") or "document.pdf")

    async def chunks(self, file_id: str) -> AsyncIterator[bytes] | None:
        """The file's bytes chunk by chunk, for the worker (about 1 MB held at a time:
        ``grid_reader.py``), or None when the file is gone."""
        doc = await self._collections.upload_files.find_one(
            {"_id": file_id}, {"length": 1, "chunkSize": 1}
        )
        if doc is None:
            return None
        return read_chunks(self._collections.upload_chunks, doc)

    async def delete(self, file_id: str) -> None:
        """Remove the file and its chunks (nothing when it is gone already)."""
        with contextlib.suppress(NoFile):
            await self._bucket.delete(file_id)
