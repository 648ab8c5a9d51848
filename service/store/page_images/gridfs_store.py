"""Page images in GridFS: bucket ``page_images`` of the service's own MongoDB database.

Each image is a standard GridFS file (readable by any GridFS client) whose ``_id`` is its key,
with ``metadata.sha256`` and ``metadata.content_type``. A put replaces the files document and
all its chunks in one transaction, so a reader, or a retry of the same page racing the first
attempt, sees the old image or the new one, never a mix and never two files for one key.
(PyMongo's own GridFS writer refuses transactions, and it buffers up to ~48 MB of chunks
before it writes; one image is far smaller, so the documents are written here directly.)
The deployment's MongoDB is a replica set, which transactions need.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, TypeVar

from bson import Binary
from gridfs.asynchronous.grid_file import AsyncGridFSBucket, AsyncGridOut
from gridfs.errors import CorruptGridFile, NoFile
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import ConnectionFailure, OperationFailure, PyMongoError
from pymongo.read_concern import ReadConcern

from service.backoff import Backoff, pause
from service.domain.errors import PageStoreError, PageStoreUnavailable
from service.domain.job import utcnow
from service.domain.page_keys import check_key, check_prefix, content_type_of
from service.store.collections import PAGE_IMAGES_BUCKET
from service.store.page_images.base import Backend, PageImage

BUCKET = PAGE_IMAGES_BUCKET
CHUNK_SIZE = 255 * 1024  # GridFS's default: a 150 KB page is one chunk
# Concurrent puts of one key conflict inside MongoDB; the loser retries after a short random
# pause. Retries of one page race at most a few times, so this bound is never the limit.
PUT_ATTEMPTS = 8
CONFLICT_BACKOFF = Backoff(first_s=0.005, max_s=1.0, jitter=1.0)
_T = TypeVar("_T")


def _starts_with(prefix: str) -> dict[str, Any]:
    return {"$regex": "^" + re.escape(prefix)}


async def _guarded(operation: Awaitable[_T]) -> _T:
    """``operation``'s result; driver failures become the page store's own errors."""
    try:
        return await operation
    except ConnectionFailure as exc:
        raise PageStoreUnavailable(f"MongoDB unreachable: {type(exc).__name__}") from exc
    except (PyMongoError, CorruptGridFile) as exc:
        raise PageStoreError(f"GridFS page store failed: {type(exc).__name__}") from exc


def _conflicted(exc: PyMongoError) -> bool:
    """Another transaction wrote the same documents first: run ours again."""
    if isinstance(exc, ConnectionFailure):
        return False  # a dead server is not a race: fail fast, the caller retries later
    return exc.has_error_label("TransientTransactionError") or (
        isinstance(exc, OperationFailure) and exc.code == 112  # WriteConflict
    )


class GridFSPageStore:
    """The ``gridfs`` backend."""

    backend: Backend = "gridfs"

    def __init__(self, db: AsyncDatabase[Any]) -> None:
        self._db = db
        self._files = db[f"{BUCKET}.files"]
        self._chunks = db[f"{BUCKET}.chunks"]
        self._bucket = AsyncGridFSBucket(db, bucket_name=BUCKET, chunk_size_bytes=CHUNK_SIZE)

    async def put(self, key: str, data: bytes, content_type: str) -> None:
        """Replace the image at ``key`` with ``data``, atomically."""
        check_key(key)
        if not data:
            raise ValueError("An image has at least one byte")
        file_doc = {
            "_id": key,
            "filename": key,
            "length": len(data),
            "chunkSize": CHUNK_SIZE,
            "uploadDate": utcnow(),
            "metadata": {"content_type": content_type, "sha256": hashlib.sha256(data).hexdigest()},
        }
        chunks = [
            {"files_id": key, "n": n, "data": Binary(data[start : start + CHUNK_SIZE])}
            for n, start in enumerate(range(0, len(data), CHUNK_SIZE))
        ]

        async def replace(session: AsyncClientSession) -> None:
            await self._chunks.delete_many({"files_id": key}, session=session)
            await self._chunks.insert_many(chunks, session=session)
            await self._files.replace_one({"_id": key}, file_doc, upsert=True, session=session)

        await _guarded(self._in_transaction(replace))

    async def _in_transaction(self, body: Callable[[AsyncClientSession], Awaitable[None]]) -> None:
        # Not session.with_transaction: it retries any transient error for up to 120 s, a dead
        # server included; here only a lost race is retried, a few times.
        delays = CONFLICT_BACKOFF.delays()
        for attempt in range(PUT_ATTEMPTS):
            async with self._db.client.start_session() as session:
                try:
                    async with await session.start_transaction():
                        await body(session)
                    return
                except PyMongoError as exc:
                    if attempt + 1 == PUT_ATTEMPTS or not _conflicted(exc):
                        raise
            await pause(next(delays))  # jittered: spreads the racers apart

    async def open(self, key: str) -> PageImage | None:
        """The image at ``key`` (one read of its files document), or None."""
        grid_out = await _guarded(self._download(key))
        if grid_out is None:
            return None
        metadata: Mapping[str, Any] = grid_out.metadata or {}
        sha256 = metadata.get("sha256") or f"{grid_out.upload_date.timestamp()}-{grid_out.length}"
        return PageImage(
            key=key,
            length=grid_out.length,
            content_type=metadata.get("content_type") or content_type_of(key),
            etag=f'"{sha256}"',
            chunks=self._chunks_of(grid_out),
        )

    async def _download(self, key: str) -> AsyncGridOut | None:
        try:
            return await self._bucket.open_download_stream(key)
        except NoFile:
            return None

    @staticmethod
    async def _chunks_of(grid_out: AsyncGridOut) -> AsyncIterator[bytes]:
        while chunk := await _guarded(grid_out.readchunk()):
            yield chunk

    async def delete_prefix(self, prefix: str) -> int:
        """Delete the files under ``prefix``, then every chunk under it (orphans included)."""
        check_prefix(prefix)
        # Files first: a reader in between finds no image (404) rather than a file without
        # its chunks; chunks left by a crash in between are removed by the next call.
        files = await _guarded(self._files.delete_many({"_id": _starts_with(prefix)}))
        await _guarded(self._chunks.delete_many({"files_id": _starts_with(prefix)}))
        return files.deleted_count

    async def count(self, prefix: str) -> int:
        """Images under ``prefix``, counting chunks whose files document is gone as images."""
        check_prefix(prefix)
        ids = await _guarded(self._files.distinct("_id", {"_id": _starts_with(prefix)}))
        owners = await _guarded(
            self._chunks.distinct("files_id", {"files_id": _starts_with(prefix)})
        )
        return len(set(ids) | set(owners))

    async def keys(self, prefix: str) -> set[str]:
        """The images under ``prefix`` whose files document exists: a put writes it last, in the
        same transaction as the chunks, so each one is whole. Read at majority: an image a
        failover could still roll back is not counted."""
        check_prefix(prefix)
        files = self._files.with_options(read_concern=ReadConcern("majority"))

        async def collect() -> set[str]:
            found = files.find({"_id": _starts_with(prefix)}, {"_id": 1})
            return {str(doc["_id"]) async for doc in found}

        return await _guarded(collect())

    async def url(self, key: str, expires_in_s: int) -> str | None:
        """None: GridFS images are served by the API under a URL it signs itself."""
        return None

    async def aclose(self) -> None:
        """Nothing to release: the MongoDB client belongs to the process."""
