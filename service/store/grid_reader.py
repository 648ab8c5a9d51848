"""A GridFS file read one chunk at a time, as a consumer takes them.

PyMongo's ``GridOut`` reads a file's chunks through a cursor of the server's default batches:
101 documents first, then up to 16 MB a ``getMore``. Reading a 30 MB file through it grew the
worker by 29 MB (measured: the worker's download of a ``pdf_file`` job), and an API serving a
large object from GridFS would hold as much per request. Here the cursor asks for
``CHUNKS_PER_BATCH`` chunks at a time (1 MB of 255 KB chunks), so a reader holds about one
batch however large the file; a missing, misnumbered or short chunk raises ``CorruptGridFile``
as ``GridOut`` would.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Mapping
from typing import Any

from gridfs.errors import CorruptGridFile
from pymongo.asynchronous.collection import AsyncCollection

CHUNKS_PER_BATCH = 4


async def read_chunks(
    chunks: AsyncCollection[Any], files_doc: Mapping[str, Any]
) -> AsyncIterator[bytes]:
    """The bytes of the file ``files_doc`` describes, chunk by chunk, in order."""
    length, chunk_size = int(files_doc["length"]), int(files_doc["chunkSize"])
    expected = math.ceil(length / chunk_size) if length else 0
    cursor = (
        chunks.find({"files_id": files_doc["_id"]}, {"_id": 0, "n": 1, "data": 1})
        .sort("n", 1)
        .batch_size(CHUNKS_PER_BATCH)
    )
    number = 0
    async for chunk in cursor:
        if chunk["n"] != number:
            raise CorruptGridFile(f"chunk {number} of {files_doc['_id']!r} is missing")
        data = bytes(chunk["data"])
        wanted = chunk_size if number + 1 < expected else length - chunk_size * number
        if len(data) != wanted:
            raise CorruptGridFile(f"chunk {number} of {files_doc['_id']!r} has the wrong size")
        number += 1
        yield data
    if number != expected:
        raise CorruptGridFile(f"{files_doc['_id']!r} has {number} of its {expected} chunks")
