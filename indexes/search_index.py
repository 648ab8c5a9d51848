"""The Atlas Vector Search index of the chunks' vectors, for ``VECTOR_SEARCH=atlas``.

MongoDB serves ``$vectorSearch`` from a search index (Atlas, or 8.2+ with mongot), not from an
ordinary one, so it is made with ``createSearchIndexes``: the vector field (its dimensions and
dot-product similarity: the vectors are unit length) and the filter fields every search names.
A server without search indexes (the embedded 6.0, say) refuses; search then stays exact, and
``sync`` says so instead of failing.
"""

from __future__ import annotations

from typing import Any

from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import OperationFailure
from pymongo.operations import SearchIndexModel

from service.store.chunks import VECTOR_INDEX
from service.store.collections import CHUNKS


def vector_index(dimensions: int) -> SearchIndexModel:
    """The search index over ``document_chunks.embedding``."""
    return SearchIndexModel(
        name=VECTOR_INDEX,
        type="vectorSearch",
        definition={
            "fields": [
                {
                    "type": "vector",
                    "path": "embedding",
                    "numDimensions": dimensions,
                    "similarity": "dotProduct",
                },
                {"type": "filter", "path": "user_id"},
                {"type": "filter", "path": "chapter_id"},
                {"type": "filter", "path": "embedding_model"},
            ]
        },
    )


async def sync_vector_index(db: AsyncDatabase[Any], dimensions: int) -> str:
    """Make the vector index unless it exists; a line saying what happened."""
    chunks = db[CHUNKS]
    try:
        existing = [index["name"] async for index in await chunks.list_search_indexes()]
        if VECTOR_INDEX in existing:
            return f"{CHUNKS}.{VECTOR_INDEX}: search index present"
        await chunks.create_search_index(vector_index(dimensions))
    except OperationFailure as exc:
        return (
            f"note: {CHUNKS}.{VECTOR_INDEX}: the server has no search indexes "
            f"({exc.code}: needs Atlas, or MongoDB 8.2+ with mongot); search stays exact"
        )
    return f"{CHUNKS}.{VECTOR_INDEX}: search index created ({dimensions} dimensions)"
