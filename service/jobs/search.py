"""Searching the caller's chapters: keyword, vector, or both fused (hybrid).

    1. rate     one search counted in the caller's 60 s window (429)
    2. scope    the caller's indexed chapters: all, one book's, or those named (a chapter id
                that is not the caller's is a 404, as if it did not exist)
    3. keyword  BM25 over the chapters' postings (``service/retrieval/bm25.py``), passages
                that share the query's words; MongoDB's text index, scoped by user, for a
                scope with a chapter indexed before passages had term vectors
    4. vector   the query embedded (the API's embedding process), then exact top-k over the
                chapters' vectors (``top_k_across``); only chapters indexed by this service's
                model (a stale chapter is found by keyword only)
    5. fuse     reciprocal rank fusion of both lists (``service/retrieval/ranking.py``, weights
                measured on the evaluation set), best first, ``k`` of them

Steps 3 and 4 run at once. A chapter's vectors and postings are read together, once, and kept
in memory (``SEARCH_CACHE_MB``, least recently used evicted).

Only the caller's passages are ever read: every query names the user first.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, TypeVar

import numpy as np

from service.domain.errors import DependencyUnavailable, EmbeddingError, NotFound
from service.jobs.context import Context
from service.retrieval import bm25
from service.retrieval.bm25 import Postings
from service.retrieval.ranking import (
    KEYWORD_DEPTH,
    VECTOR_DEPTH,
    Matrix,
    Scope,
    hybrid,
    top_k_across,
    vectors_from_bson,
)
from service.retrieval.terms import ANALYZER, query_terms

log = logging.getLogger("service.search")
# Set once the server refused $vectorSearch: this process then searches exactly.
_atlas_refused: list[bool] = []

Doc = dict[str, Any]
T = TypeVar("T")
SNIPPET_CHARS = 240
_WORD = re.compile(r"\w+", re.UNICODE)


class Mode(StrEnum):
    hybrid = "hybrid"
    vector = "vector"
    keyword = "keyword"


@dataclass(frozen=True, slots=True)
class SearchRequest:
    query: str
    k: int = 10
    mode: Mode = Mode.hybrid
    book_id: str | None = None
    chapter_ids: tuple[str, ...] | None = None


@dataclass(frozen=True, slots=True)
class Hit:
    """One passage found: the chunk, its chapter, a snippet around the query, its score."""

    chunk: Doc
    chapter: Doc
    snippet: str
    score: float


async def search(ctx: Context, user_id: str, request: SearchRequest) -> list[Hit]:
    """The caller's passages that best answer ``request``, best first (see the module)."""
    await ctx.limiter.hit(
        f"search:{user_id}", ctx.settings.search_rate_limit_per_minute, "searches"
    )
    # The query is embedded (in the embedding process) while the scope is read and the keyword
    # step runs here or in MongoDB.
    embedding = None
    if request.mode is not Mode.keyword:
        embedding = asyncio.ensure_future(_embed(ctx, request.query))
    try:
        return await _search(ctx, user_id, request, embedding)
    finally:
        if embedding is not None and not embedding.done():
            embedding.cancel()  # not needed after all (no chapters, or a step failed)
        elif embedding is not None and not embedding.cancelled():
            embedding.exception()  # retrieved: raised already, or not needed


async def _search(
    ctx: Context, user_id: str, request: SearchRequest, embedding: Awaitable[Matrix] | None
) -> list[Hit]:
    chapters = await _scope(ctx, user_id, request)
    if not chapters:
        return []
    steps: list[Awaitable[list[tuple[str, float]]]] = []
    if request.mode is not Mode.vector:
        depth = max(request.k, KEYWORD_DEPTH) if request.mode is Mode.hybrid else request.k
        steps.append(_keyword_search(ctx, user_id, request.query, chapters, depth))
    if embedding is not None:
        current = [c for c in chapters if (c.get("search") or {}).get("model") == ctx.model.name]
        depth = max(request.k, VECTOR_DEPTH) if request.mode is Mode.hybrid else request.k
        steps.append(_vector_search(ctx, user_id, embedding, current, depth))
    found = await _together(steps)
    if request.mode is Mode.hybrid:
        keyword, vector = found
        ranked = hybrid([chunk_id for chunk_id, _ in vector], [i for i, _ in keyword])
    else:
        (ranked,) = found
    ranked = ranked[: request.k]
    found_chunks = await ctx.store.chunks.results(user_id, [chunk_id for chunk_id, _ in ranked])
    by_chapter = {chapter["chapter_id"]: chapter for chapter in chapters}
    return [
        Hit(chunk, by_chapter[chunk["chapter_id"]], snippet(chunk["content"], request.query), score)
        for chunk_id, score in ranked
        if (chunk := found_chunks.get(chunk_id)) is not None and chunk["chapter_id"] in by_chapter
    ]


async def _together(steps: Sequence[Awaitable[T]]) -> list[T]:
    """The steps' results, run at once; the first to fail is raised as it is (the API maps it
    to its status) and the others are cancelled."""
    tasks = [asyncio.ensure_future(step) for step in steps]
    try:
        return await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()  # nothing for those done


async def _scope(ctx: Context, user_id: str, request: SearchRequest) -> list[Doc]:
    chapters = ctx.store.chapters
    if request.chapter_ids is not None:
        owned = await chapters.owned_ids(user_id, request.chapter_ids)
        for chapter_id in request.chapter_ids:
            if chapter_id not in owned:  # another user's chapter is as unknown as none at all
                raise NotFound(f"Chapter {chapter_id[:64]} not found")
    return await chapters.searchable(
        user_id, book_id=request.book_id, chapter_ids=request.chapter_ids
    )


async def _embed(ctx: Context, query: str) -> Matrix:
    """The query's vector, from the API's embedding process."""
    try:
        embedded = await ctx.embeddings.embed([query], "query")
    except EmbeddingError as exc:
        log.warning("search: the query could not be embedded (%s)", exc)
        raise DependencyUnavailable("search") from None
    vector: Matrix = embedded[0]
    return vector


async def _vector_search(
    ctx: Context, user_id: str, embedding: Awaitable[Matrix], chapters: Sequence[Doc], depth: int
) -> list[tuple[str, float]]:
    """The ``depth`` passages nearest the query (its ``embedding``, awaited) over
    ``chapters``, with their cosine."""
    if not chapters:
        return []
    if ctx.settings.vector_search == "atlas" and not _atlas_refused:
        vector = await embedding
        ids = [chapter["chapter_id"] for chapter in chapters]
        atlas = await ctx.store.chunks.vector_search(
            user_id, vector.tolist(), ids, ctx.model.name, depth
        )
        if atlas is not None:
            return atlas
        # MongoDB without mongot (6.0: "Unrecognized pipeline stage name"), or no search index
        # yet: this process searches exactly from now on, and says so once.
        _atlas_refused.append(True)
        log.warning("VECTOR_SEARCH=atlas: $vectorSearch refused by the server; exact search")
    # The chapters' vectors are read (or found in memory) while the query is embedded.
    scopes, vector = await asyncio.gather(
        asyncio.gather(*(_chapter_index(ctx, user_id, c) for c in chapters)), embedding
    )
    which, rows, scores = top_k_across([scope.matrix for scope in scopes], vector, depth)
    return [
        (scopes[chapter].vector_id(row), score)
        for chapter, row, score in zip(which.tolist(), rows.tolist(), scores.tolist(), strict=True)
    ]


async def _keyword_search(
    ctx: Context, user_id: str, query: str, chapters: Sequence[Doc], depth: int
) -> list[tuple[str, float]]:
    """The ``depth`` passages that best match the query's words over ``chapters``, with their
    score: BM25 over the chapters' cached postings, or MongoDB's text index when keyword search
    is set to it or some chapter of the scope has no term vectors (indexed before they were)."""
    if ctx.settings.keyword_search == "bm25" and all(_has_terms(c) for c in chapters):
        scopes = await asyncio.gather(*(_chapter_index(ctx, user_id, c) for c in chapters))
        postings = [scope.postings for scope in scopes if scope.postings is not None]
        if len(postings) == len(scopes):
            which, rows, scores = bm25.top_k(postings, query_terms(query), depth)
            return [
                (scopes[chapter].ids[row], score)
                for chapter, row, score in zip(
                    which.tolist(), rows.tolist(), scores.tolist(), strict=True
                )
            ]
    ids = [chapter["chapter_id"] for chapter in chapters]
    return await ctx.store.chunks.keyword(user_id, query, ids, depth)


def _has_terms(chapter: Doc) -> bool:
    return (chapter.get("search") or {}).get("terms") == ANALYZER


async def _chapter_index(ctx: Context, user_id: str, chapter: Doc) -> Scope[str]:
    """A chapter's vectors and keyword postings, from memory or MongoDB (one read for both);
    a chapter re-indexed or given term vectors since has a new key."""
    chapter_id = chapter["chapter_id"]
    state = chapter.get("search") or {}
    key = (user_id, chapter_id, (state.get("indexed_at"), state.get("terms")))

    async def load() -> Scope[str]:
        found = await ctx.store.chunks.searched(user_id, chapter_id, ctx.model.name)
        if found.vectors:
            matrix = vectors_from_bson(found.vectors, ctx.model.dimensions)
        else:
            matrix = np.empty((0, ctx.model.dimensions), dtype=np.float32)
        every = len(found.vector_rows) == len(found.ids)
        stored = [terms for terms in found.terms if terms is not None]
        postings = None  # some chunk without a term vector: keyword search by the text index
        if len(stored) == len(found.ids):
            postings = await asyncio.to_thread(Postings.from_stored, stored)
        return Scope(
            found.ids,
            matrix,
            postings=postings,
            vector_rows=None if every else np.array(found.vector_rows, dtype=np.intp),
        )

    return await ctx.vectors.get_or_load(key, load)


def snippet(content: str, query: str, width: int = SNIPPET_CHARS) -> str:
    """About ``width`` characters of ``content`` around the first word of the query it holds
    (its start, when it holds none), cut at word boundaries."""
    words = {word.lower() for word in _WORD.findall(query) if len(word) > 2}
    start = 0
    for match in _WORD.finditer(content):
        if match.group().lower() in words:
            start = max(0, match.start() - width // 4)
            break
    end = min(len(content), start + width)
    if start > 0:
        space = content.find(" ", start)
        start = space + 1 if 0 <= space < start + 20 else start
    if end < len(content):
        space = content.rfind(" ", start, end)
        end = space if space > start else end
    text = " ".join(content[start:end].split())
    return ("… " if start > 0 else "") + text + (" …" if end < len(content) else "")
