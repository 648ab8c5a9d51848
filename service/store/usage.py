"""What a user stores, counted in MongoDB so that every API process sees the same figure.

Stored bytes are the lengths of the user's uploads (GridFS ``pdf_files``) plus their page images
(GridFS ``page_images``; a bucket nobody wrote to yet counts zero), each summed over the
``metadata.user_id`` + ``length`` index, so the sum reads the index alone. The limits that use
these figures are in ``service/limits/quota.py``.
"""

from __future__ import annotations

import asyncio
from typing import Any

from pymongo.asynchronous.collection import AsyncCollection

from service.store.collections import Collections


async def _bytes_in(collection: AsyncCollection[Any], user_id: str) -> int:
    cursor = await collection.aggregate(
        [
            {"$match": {"metadata.user_id": user_id}},
            {"$group": {"_id": None, "bytes": {"$sum": "$length"}}},
        ]
    )
    rows = await cursor.to_list()
    return int(rows[0]["bytes"]) if rows else 0


class Usage:
    """A user's stored bytes."""

    def __init__(self, collections: Collections) -> None:
        self._files = (collections.upload_files, collections.image_files)

    async def stored_bytes(self, user_id: str) -> int:
        """Bytes the user stores: uploaded PDFs plus page images."""
        sums = await asyncio.gather(*(_bytes_in(files, user_id) for files in self._files))
        return sum(sums)
