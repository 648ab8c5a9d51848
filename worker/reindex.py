"""``python -m worker.reindex``: (re-)index chapters for search.

    python -m worker.reindex            chapters never indexed, failed, or stale (indexed by
                                        another embedding model than EMBEDDING_MODEL_DIR's)
    python -m worker.reindex --all      every chapter (after changing how chunks are made)
    python -m worker.reindex --user U   only user U's chapters

It marks the chapters pending; the running workers' indexers index them, one at a time each,
beside their jobs (docs/operations.md). Chapters stored before pages had their own collection
have their pages moved first. Ready chapters whose passages have no term vectors (indexed
before keyword search used them) get them here, from their stored text, without embedding
anything again: until then a search of them uses MongoDB's text index. Prints what it did; run
it again at any time.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from service.domain import indexing
from service.domain.indexing import SearchStatus
from service.domain.job import utcnow
from service.retrieval.model import load_model_spec
from service.retrieval.terms import ANALYZER, term_vectors
from service.settings import Settings
from service.store.database import Store, open_store


def chapters_to_index(model: str, *, everything: bool, user_id: str | None) -> dict[str, Any]:
    """The filter of the chapters to mark pending."""
    query: dict[str, Any] = {}
    if not everything:
        query["$or"] = [
            {"search": {"$exists": False}},
            {"search.status": SearchStatus.failed.value},
            {"search.status": SearchStatus.ready.value, "search.model": {"$ne": model}},
        ]
    if user_id is not None:
        query["user_id"] = user_id
    return query


async def reindex(settings: Settings, *, everything: bool, user_id: str | None) -> str:
    """Move legacy pages, mark chapters pending; a line saying what was done."""
    model = load_model_spec(settings.embedding_model_dir)
    store = await open_store(settings)
    try:
        moved = await store.chapters.migrate_legacy_pages()
        query = chapters_to_index(model.name, everything=everything, user_id=user_id)
        marked = await store.chapters.request_index(indexing.request(query, utcnow()))
        termed = await add_terms(store, user_id)
    finally:
        await store.aclose()
    return (
        f"{marked} chapter(s) marked to be indexed with {model.name}"
        + (f"; {moved} page(s) moved to their own collection" if moved else "")
        + (f"; term vectors added to {termed} chapter(s)" if termed else "")
        + ": running workers index them now"
    )


async def add_terms(store: Store, user_id: str | None) -> int:
    """Give term vectors to the chunks of ready chapters that have none; how many chapters
    got them (one indexed again meanwhile is left to its indexer, which writes its own)."""
    done = 0
    for chapter in await store.chapters.without_terms(ANALYZER, user_id):
        chunks = await store.chunks.contents(chapter["chapter_id"])
        vectors = await asyncio.to_thread(term_vectors, [content for _, content in chunks])
        await store.chunks.set_terms(
            [(chunk_id, v) for (chunk_id, _), v in zip(chunks, vectors, strict=True)]
        )
        write = indexing.terms_added(
            chapter["chapter_id"], chapter["search"]["indexed_at"], ANALYZER
        )
        done += await store.chapters.apply_index(write) is not None
    return done


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m worker.reindex", description=__doc__)
    parser.add_argument("--all", action="store_true", help="every chapter, not only the stale")
    parser.add_argument("--user", help="only this user's chapters")
    args = parser.parse_args(argv)
    print(asyncio.run(reindex(Settings(), everything=args.all, user_id=args.user)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
