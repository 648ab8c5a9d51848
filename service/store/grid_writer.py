"""A GridFS file written one chunk document at a time, as its bytes arrive.

PyMongo's ``AsyncGridIn`` gathers chunk documents until they reach the maximum message size
(about 48 MB) before it inserts any, and has no public flush: every upload in flight would hold up
to 48 MB in the API. This writer inserts each chunk as soon as it is full and waits for MongoDB
before taking more, so one upload holds at most one chunk of pending bytes plus the piece being
written, and a slow database slows the client down instead of filling memory.

The documents are GridFS's own (``<bucket>.files``: ``_id``, ``length``, ``chunkSize``,
``uploadDate``, ``filename``, ``metadata``; ``<bucket>.chunks``: ``files_id``, ``n``, ``data``),
so ``AsyncGridFSBucket`` reads, streams and deletes them as usual. The files document is inserted
last: until ``close`` a reader cannot find the file, and ``abort`` removes the chunks written.

The driver creates a bucket's indexes on its first write; chunks written here never pass through
it, so those indexes are declared in ``service/store/documents.py`` and kept by
``python -m indexes sync`` instead (the API creates no index at run time).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bson import Binary, Int64
from pymongo.asynchronous.collection import AsyncCollection

from service.domain.job import utcnow


class GridWriter:
    """One GridFS file being written; ``write`` pieces, then ``close`` or ``abort``."""

    def __init__(
        self,
        files: AsyncCollection[Any],
        chunks: AsyncCollection[Any],
        *,
        file_id: str,
        filename: str,
        metadata: Mapping[str, Any],
        chunk_size: int,
    ) -> None:
        self._files = files
        self._chunks = chunks
        self._file_id = file_id
        self._filename = filename
        self._metadata = dict(metadata)
        self._chunk_size = chunk_size
        self._pending = bytearray()  # less than one chunk between writes
        self._chunk_number = 0
        self.length = 0

    async def _insert_chunk(self, data: bytes) -> None:
        await self._chunks.insert_one(
            {"files_id": self._file_id, "n": self._chunk_number, "data": Binary(data)}
        )
        self._chunk_number += 1

    async def write(self, data: bytes) -> None:
        """Append ``data``; every chunk it completes is inserted before this returns."""
        self._pending += data
        self.length += len(data)
        while len(self._pending) >= self._chunk_size:
            with memoryview(self._pending) as view:
                chunk = bytes(view[: self._chunk_size])
            del self._pending[: self._chunk_size]
            await self._insert_chunk(chunk)

    async def flush(self) -> None:
        """Insert the last, partly filled chunk: every byte written is in MongoDB."""
        if self._pending:
            chunk = bytes(self._pending)
            self._pending.clear()
            await self._insert_chunk(chunk)

    def files_document(self, extra_metadata: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The files document of what was written (for a caller that inserts it itself)."""
        return {
            "_id": self._file_id,
            "length": Int64(self.length),
            "chunkSize": self._chunk_size,
            "uploadDate": utcnow(),
            "filename": self._filename,
            "metadata": {**self._metadata, **(extra_metadata or {})},
        }

    async def close(self, extra_metadata: Mapping[str, Any] | None = None) -> None:
        """Insert the last chunk and then the files document: the file exists from now on."""
        await self.flush()
        await self._files.insert_one(self.files_document(extra_metadata))

    async def abort(self) -> None:
        """Remove every chunk written so far (and the files document, if ``close`` got there)."""
        self._pending.clear()
        await self._chunks.delete_many({"files_id": self._file_id})
        await self._files.delete_one({"_id": self._file_id})
