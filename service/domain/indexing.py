"""A chapter's search index: its state, as a small pure table like the job's lifecycle.

                     claim                       ready
    pending ──────────────────▶ indexing ─────────────────────▶ ready
       ▲  ▲                      │   │  ▲                          │
       │  └──── release ─────────┘   │  └── progress (same lease)  │ the model changes:
       │   (its worker stopped,      └──── fail ──────▶ failed     ▼ shown as "stale"
       │    or the sweeper: stale)                                 │
       └────────────── request (a new chapter, the re-index command) ◀┘

The state lives on the chapter (``search``), so the chapter is ready when its pages are, and its
index follows on its own: a worker's indexer claims a pending chapter (opening a lease, as a
job's run does), writes its chunks, embeds them in batches (each batch a ``progress`` that is
also its heartbeat), and marks it ready with the model that made its vectors. Search compares
only vectors of one model: a chapter indexed with another is ``stale`` until indexed again.

Pure: each function returns the filter and update that ``service/store/chapters.py`` applies as
one atomic update.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from service.domain.job import new_id

Doc = dict[str, Any]


class SearchStatus(StrEnum):
    """Where a chapter's index stands (``stale`` is ``ready`` with another model's vectors)."""

    pending = "pending"
    indexing = "indexing"
    ready = "ready"
    failed = "failed"
    stale = "stale"


@dataclass(frozen=True, slots=True)
class IndexWrite:
    """One guarded atomic update of one chapter's index state."""

    filter: Doc
    update: Doc
    lease_id: str | None = None


def public_status(search: Doc | None, model: str) -> SearchStatus:
    """What a client is told: the stored status, ``stale`` for vectors of another model, and
    ``pending`` for a chapter stored before search existed."""
    if not search:
        return SearchStatus.pending
    status = SearchStatus(search.get("status", SearchStatus.pending))
    if status is SearchStatus.ready and search.get("model") != model:
        return SearchStatus.stale
    return status


def request(chapter_filter: Doc, now: datetime) -> IndexWrite:
    """(Re-)index the chapters ``chapter_filter`` matches, unless one is being indexed now."""
    return IndexWrite(
        {**chapter_filter, "search.status": {"$ne": SearchStatus.indexing.value}},
        {
            "$set": {
                "search.status": SearchStatus.pending.value,
                "search.requested_at": now,
                "search.attempts": 0,
                "search.error": None,
            }
        },
    )


def claim(now: datetime) -> IndexWrite:
    """``pending -> indexing`` for whichever pending chapter is matched first, with a new lease."""
    lease_id = new_id()
    return IndexWrite(
        {"search.status": SearchStatus.pending.value},
        {
            "$set": {
                "search.status": SearchStatus.indexing.value,
                "search.lease_id": lease_id,
                "search.heartbeat_at": now,
                "search.started_at": now,
                "search.embedded": 0,
            },
            "$inc": {"search.attempts": 1},
        },
        lease_id=lease_id,
    )


def progress(
    chapter_id: str, lease_id: str, chunks: int, embedded: int, now: datetime
) -> IndexWrite:
    """How far the run holding ``lease_id`` got; also its heartbeat."""
    return IndexWrite(
        _held(chapter_id, lease_id),
        {
            "$set": {
                "search.chunks": chunks,
                "search.embedded": embedded,
                "search.heartbeat_at": now,
            }
        },
    )


def heartbeat(chapter_id: str, lease_id: str, now: datetime) -> IndexWrite:
    """The run holding ``lease_id`` is alive (beaten on a timer: a batch can take longer than
    the sweeper waits)."""
    return IndexWrite(_held(chapter_id, lease_id), {"$set": {"search.heartbeat_at": now}})


def ready(
    chapter_id: str,
    lease_id: str,
    model: str,
    chunks: int,
    now: datetime,
    *,
    terms: str | None = None,
) -> IndexWrite:
    """``indexing -> ready``: every chunk embedded by ``model``, and given its term vector by
    the analyzer ``terms`` (``service/retrieval/terms.py``; None: no term vectors)."""
    return IndexWrite(
        _held(chapter_id, lease_id),
        {
            "$set": {
                "search.status": SearchStatus.ready.value,
                "search.model": model,
                "search.terms": terms,
                "search.chunks": chunks,
                "search.embedded": chunks,
                "search.indexed_at": now,
                "search.lease_id": None,
                "search.error": None,
            }
        },
    )


def terms_added(chapter_id: str, indexed_at: datetime, terms: str) -> IndexWrite:
    """A ready chapter's chunks were given term vectors by the analyzer ``terms`` after they
    were indexed (``python -m worker.reindex``), unless it was indexed again since."""
    return IndexWrite(
        {
            "chapter_id": chapter_id,
            "search.status": SearchStatus.ready.value,
            "search.indexed_at": indexed_at,
        },
        {"$set": {"search.terms": terms}},
    )


def fail(chapter_id: str, lease_id: str | None, reason: str, now: datetime) -> IndexWrite:
    """``indexing -> failed``: the chapter cannot be indexed (its reason is kept)."""
    return IndexWrite(
        _held(chapter_id, lease_id),
        {
            "$set": {
                "search.status": SearchStatus.failed.value,
                "search.error": reason,
                "search.failed_at": now,
                "search.lease_id": None,
            }
        },
    )


def release(
    chapter_id: str, lease_id: str | None, stale_before: datetime | None = None
) -> IndexWrite:
    """``indexing -> pending``: by its own run (stopping), or by the sweeper once its heartbeat
    is older than ``stale_before`` (the lease it saw still in place)."""
    guard = _held(chapter_id, lease_id)
    if stale_before is not None:
        guard["search.heartbeat_at"] = {"$lt": stale_before}
    return IndexWrite(
        guard, {"$set": {"search.status": SearchStatus.pending.value, "search.lease_id": None}}
    )


def _held(chapter_id: str, lease_id: str | None) -> Doc:
    return {
        "chapter_id": chapter_id,
        "search.status": SearchStatus.indexing.value,
        "search.lease_id": lease_id,
    }
