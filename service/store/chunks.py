"""Retrieval chunks (``document_chunks``): a chapter's passages, their vectors, and the two
searches over them (keyword through MongoDB's text index, vectors read for an exact search).

A chapter's chunks are replaced whole when it is (re-)indexed: written first without vectors
(the chunk-listing contract lists them at once), then given their vectors in batches. Every
query names its user first: the text index's prefix is ``user_id``, so a keyword search never
reads another user's passages, and neither does anything else here.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bson import Binary
from pymongo import InsertOne, UpdateOne
from pymongo.errors import OperationFailure

from service.domain.job import utcnow
from service.store.collections import Collections
from service.store.failure import is_transient

log = logging.getLogger("service.chunks")

Doc = dict[str, Any]

# A chunk in the chunk-listing contract's list: its content cut short by MongoDB before it is
# sent, and never its vector.
CONTENT_PREVIEW_CHARS = 500
PREVIEW_FIELDS = {
    "job_id": 1,
    "chunk_index": 1,
    "metadata": 1,
    "created_at": 1,
    "updated_at": 1,
    "content": {"$substrCP": ["$content", 0, CONTENT_PREVIEW_CHARS]},
}
# The Atlas Vector Search index of the chunks' vectors (VECTOR_SEARCH=atlas), its filter fields
# the ones every search names: made by `python -m indexes sync` (indexes/search_index.py).
VECTOR_INDEX = "chunk_embedding_vector"
# What a search result shows of a chunk.
RESULT_FIELDS = {
    "job_id": 1,
    "chapter_id": 1,
    "book_id": 1,
    "chunk_index": 1,
    "content": 1,
    "page_start": 1,
    "page_end": 1,
    "section": 1,
    "metadata.page_number": 1,
}


@dataclass(frozen=True, slots=True)
class SearchedChunks:
    """A chapter's chunks as search reads them (``ChunkStore.searched``)."""

    ids: list[str]
    vector_rows: list[int]  # the rows of ids whose vectors are in vectors, in order
    vectors: list[bytes]
    terms: list[bytes | None]


class ChunkStore:
    """``document_chunks``."""

    def __init__(self, collections: Collections) -> None:
        self.chunks = collections.chunks

    # --- Written by a chapter's indexer ------------------------------------------------------

    async def replace(self, chapter_id: str, docs: Sequence[Doc]) -> None:
        """The chapter's chunks become ``docs`` (its earlier ones are removed first)."""
        await self.chunks.delete_many({"chapter_id": chapter_id})
        if docs:
            await self.chunks.bulk_write([InsertOne(dict(doc)) for doc in docs], ordered=False)

    async def set_embeddings(self, vectors: Sequence[tuple[str, Binary]], model: str) -> None:
        """Each chunk's vector (BSON binary, float32) and the model that made it."""
        now = utcnow()
        operations = [
            UpdateOne(
                {"_id": chunk_id},
                {"$set": {"embedding": vector, "embedding_model": model, "updated_at": now}},
            )
            for chunk_id, vector in vectors
        ]
        if operations:
            await self.chunks.bulk_write(operations, ordered=False)

    async def contents(self, chapter_id: str) -> list[tuple[str, str]]:
        """The chapter's chunks' ids and text, for term vectors added after indexing."""
        found = self.chunks.find({"chapter_id": chapter_id}, {"_id": 1, "content": 1})
        return [(str(doc["_id"]), doc.get("content") or "") async for doc in found]

    async def set_terms(self, terms: Sequence[tuple[str, bytes]]) -> None:
        """Each chunk's term vector (``service/retrieval/terms.py``)."""
        operations = [UpdateOne({"_id": chunk_id}, {"$set": {"terms": t}}) for chunk_id, t in terms]
        if operations:
            await self.chunks.bulk_write(operations, ordered=False)

    async def delete_chapter(self, chapter_id: str) -> None:
        await self.chunks.delete_many({"chapter_id": chapter_id})

    # --- The chunk-listing contract ---------------------------------------------------------

    async def count(self, job_id: str) -> int:
        return await self.chunks.count_documents({"job_id": job_id})

    async def previews(
        self, job_id: str, order: dict[str, int], offset: int, limit: int
    ) -> list[Doc]:
        """One page of a job's chunks, their content cut short by MongoDB before it is sent."""
        cursor = await self.chunks.aggregate(
            [
                {"$match": {"job_id": job_id}},
                {"$sort": order},
                {"$skip": offset},
                {"$limit": limit},
                {"$project": PREVIEW_FIELDS},
            ]
        )
        page: list[Doc] = await cursor.to_list()
        return page

    async def owned(self, chunk_id: str, user_id: str) -> Doc | None:
        """One of the user's chunks, whole (its vector included)."""
        doc: Doc | None = await self.chunks.find_one({"_id": chunk_id, "user_id": user_id})
        return doc

    # --- Search -------------------------------------------------------------------------------

    async def keyword(
        self, user_id: str, query: str, chapter_ids: Sequence[str], limit: int
    ) -> list[tuple[str, float]]:
        """The user's chunks of ``chapter_ids`` that match ``query``'s words, best first, with
        MongoDB's text score."""
        found = self.chunks.find(
            {
                "user_id": user_id,
                "$text": {"$search": query},
                "chapter_id": {"$in": list(chapter_ids)},
            },
            {"_id": 1, "score": {"$meta": "textScore"}},
        )
        found = found.sort([("score", {"$meta": "textScore"})]).limit(limit)
        return [(str(doc["_id"]), float(doc["score"])) async for doc in found]

    async def searched(self, user_id: str, chapter_id: str, model: str) -> SearchedChunks:
        """What search keeps in memory of the chapter's chunks, in order, in one read: their
        ids, the vectors of those embedded by ``model``, and their term vectors (None when a
        chunk has none)."""
        found = self.chunks.find(
            {"user_id": user_id, "chapter_id": chapter_id},
            {"_id": 1, "embedding": 1, "embedding_model": 1, "terms": 1},
        ).sort("chunk_index", 1)
        out = SearchedChunks([], [], [], [])
        async for doc in found:
            if doc.get("embedding") is not None and doc.get("embedding_model") == model:
                out.vector_rows.append(len(out.ids))
                out.vectors.append(bytes(doc["embedding"]))
            out.ids.append(str(doc["_id"]))
            terms = doc.get("terms")
            out.terms.append(None if terms is None else bytes(terms))
        return out

    async def vector_search(
        self,
        user_id: str,
        query: Sequence[float],
        chapter_ids: Sequence[str],
        model: str,
        limit: int,
    ) -> list[tuple[str, float]] | None:
        """The nearest of the user's chunks of ``chapter_ids`` embedded by ``model``, through
        MongoDB's ``$vectorSearch`` (Atlas, or 8.2+ with mongot; the ``VECTOR_INDEX`` search
        index); None when the server refuses the stage (6.0: 40324, no such stage; or no search
        index), logged."""
        try:
            return await self._vector_search(user_id, query, chapter_ids, model, limit)
        except OperationFailure as exc:
            if is_transient(exc):
                raise
            log.warning(
                "$vectorSearch refused (%s %s)", exc.code, exc.details and exc.details.get("errmsg")
            )
            return None

    async def _vector_search(
        self,
        user_id: str,
        query: Sequence[float],
        chapter_ids: Sequence[str],
        model: str,
        limit: int,
    ) -> list[tuple[str, float]]:
        cursor = await self.chunks.aggregate(
            [
                {
                    "$vectorSearch": {
                        "index": VECTOR_INDEX,
                        "path": "embedding",
                        "queryVector": list(query),
                        "numCandidates": max(10 * limit, 100),
                        "limit": limit,
                        "filter": {
                            "user_id": user_id,
                            "chapter_id": {"$in": list(chapter_ids)},
                            "embedding_model": model,
                        },
                    }
                },
                {"$project": {"_id": 1, "score": {"$meta": "vectorSearchScore"}}},
            ]
        )
        return [(str(doc["_id"]), float(doc["score"])) async for doc in cursor]

    async def results(self, user_id: str, chunk_ids: Sequence[str]) -> dict[str, Doc]:
        """The user's chunks by id, with what a search result shows."""
        found = self.chunks.find(
            {"_id": {"$in": list(chunk_ids)}, "user_id": user_id}, RESULT_FIELDS
        )
        return {str(doc["_id"]): doc async for doc in found}
