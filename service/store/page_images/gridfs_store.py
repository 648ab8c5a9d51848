"""Page images in GridFS: bucket ``page_images`` of the service's own MongoDB database.

Each image is a standard GridFS file (readable by any GridFS client) whose ``_id`` is its key,
with ``metadata.sha256``, ``metadata.content_type`` and its owner, ``metadata.user_id``. A put
replaces the files document and all its chunks in one transaction, so a reader, or a retry of
the same page racing the first attempt, sees the old image or the new one, never a mix and never
two files for one key. (PyMongo's own GridFS writer refuses transactions, and it buffers up to
~48 MB of chunks before it writes; one image is far smaller, so the documents are written here
directly.) The deployment's MongoDB is a replica set, which transactions need.

A large object (``put_file``: a ``pdf_file`` chapter's PDF, up to ``MAX_UPLOAD_MB``) is not put
that way: its chunks in one transaction would make a transaction of 100 MB, past what
WiredTiger's cache takes (``TransactionTooLargeForCache`` with 0.5 GB), and its bytes would all
be held at once. It is written as a GridFS revision: chunks under an ``_id`` of its own
(``<key>~<random>``), each inserted as the file is read, then, in one small transaction, its
files document (``filename`` = the key) in place of the key's older ones, whose chunks go after.
A reader finds a key by ``_id`` (an image) or by ``filename`` (a revision), and sees the old file
or the new one, never a mix.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from bson import Binary
from gridfs.errors import CorruptGridFile
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import ConnectionFailure, PyMongoError
from pymongo.read_concern import ReadConcern

from service.domain.errors import PageStoreError, PageStoreUnavailable
from service.domain.job import utcnow
from service.domain.page_keys import check_key, check_prefix, content_type_of
from service.store.collections import PAGE_IMAGES_BUCKET
from service.store.grid_reader import read_chunks
from service.store.grid_writer import GridWriter
from service.store.page_images.base import Backend, PageImage
from service.store.transaction import in_transaction

BUCKET = PAGE_IMAGES_BUCKET
CHUNK_SIZE = 255 * 1024  # GridFS's default: a 150 KB page is one chunk
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


def _metadata(content_type: str, sha256: str, owner: str | None) -> dict[str, Any]:
    return {
        "content_type": content_type,
        "sha256": sha256,
        **({"user_id": owner} if owner is not None else {}),
    }


class GridFSPageStore:
    """The ``gridfs`` backend."""

    backend: Backend = "gridfs"

    def __init__(self, db: AsyncDatabase[Any]) -> None:
        self._db = db
        self._files = db[f"{BUCKET}.files"]
        self._chunks = db[f"{BUCKET}.chunks"]

    async def put(self, key: str, data: bytes, content_type: str, owner: str | None = None) -> None:
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
            "metadata": _metadata(content_type, hashlib.sha256(data).hexdigest(), owner),
        }
        chunks = [
            {"files_id": key, "n": n, "data": Binary(data[start : start + CHUNK_SIZE])}
            for n, start in enumerate(range(0, len(data), CHUNK_SIZE))
        ]

        async def replace(session: AsyncClientSession) -> None:
            await self._chunks.delete_many({"files_id": key}, session=session)
            await self._chunks.insert_many(chunks, session=session)
            await self._files.replace_one({"_id": key}, file_doc, upsert=True, session=session)

        await _guarded(in_transaction(self._db.client, replace))

    async def put_file(
        self, key: str, path: Path, content_type: str, owner: str | None = None
    ) -> None:
        """Store the file at ``path`` under ``key`` as a new revision, chunk by chunk (see the
        module docstring): one chunk in memory at a time, one small transaction at the end."""
        check_key(key)
        revision = f"{key}~{uuid.uuid4().hex}"
        writer = GridWriter(
            self._files, self._chunks, file_id=revision, filename=key, metadata={},
            chunk_size=CHUNK_SIZE,
        )  # fmt: skip
        digest = hashlib.sha256()
        try:
            with path.open("rb") as source:
                while piece := source.read(CHUNK_SIZE):  # a local file: a read is a memcpy
                    digest.update(piece)
                    await _guarded(writer.write(piece))
            if writer.length == 0:
                raise ValueError("An object has at least one byte")
            await _guarded(writer.flush())
            document = writer.files_document(_metadata(content_type, digest.hexdigest(), owner))

            async def swap(session: AsyncClientSession) -> list[Any]:
                older = await self._files.distinct("_id", {"filename": key}, session=session)
                await self._files.delete_many({"filename": key}, session=session)
                await self._files.insert_one(document, session=session)
                return older

            replaced = await _guarded(in_transaction(self._db.client, swap))
        except BaseException:
            with contextlib.suppress(PyMongoError):  # what is left, delete_prefix removes
                await writer.abort()
            raise
        if replaced:  # their files documents are gone: no reader finds these chunks any more
            await _guarded(self._chunks.delete_many({"files_id": {"$in": replaced}}))

    async def open(self, key: str) -> PageImage | None:
        """The image at ``key`` (one read of its files document), or None; its chunks are read
        as they are taken, a few at a time (``grid_reader.py``), however large it is."""
        check_key(key)
        doc = await _guarded(self._files.find_one({"_id": key}))
        if doc is None:  # a revision written by put_file: its _id is its own, its filename the key
            found = self._files.find({"filename": key}).sort("uploadDate", -1).limit(1)
            doc = next(iter(await _guarded(found.to_list())), None)
        if doc is None:
            return None
        metadata: Mapping[str, Any] = doc.get("metadata") or {}
        sha256 = metadata.get("sha256") or f"{doc['uploadDate'].timestamp()}-{doc['length']}"
        return PageImage(
            key=key,
            length=int(doc["length"]),
            content_type=metadata.get("content_type") or content_type_of(key),
            etag=f'"{sha256}"',
            chunks=self._chunks_of(doc),
        )

    async def _chunks_of(self, doc: Mapping[str, Any]) -> AsyncIterator[bytes]:
        chunks = read_chunks(self._chunks, doc)
        while True:
            try:
                chunk = await _guarded(anext(chunks))
            except StopAsyncIteration:
                return
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
        same transaction as the chunks, and a revision (``put_file``) is swapped in once its
        chunks are all written, so each one is whole. Keys are read from ``filename`` (a
        revision's ``_id`` is its own). Read at majority: an image a failover could still roll
        back is not counted."""
        check_prefix(prefix)
        files = self._files.with_options(read_concern=ReadConcern("majority"))

        async def collect() -> set[str]:
            found = files.find({"filename": _starts_with(prefix)}, {"_id": 0, "filename": 1})
            return {str(doc["filename"]) async for doc in found}

        return await _guarded(collect())

    async def url(self, key: str, expires_in_s: int) -> str | None:
        """None: GridFS images are served by the API under a URL it signs itself."""
        return None

    async def aclose(self) -> None:
        """Nothing to release: the MongoDB client belongs to the process."""
