"""Where an earlier run stopped: the pages a resumed run keeps, and renders no more.

A page is stored in two steps: its images go to the page store, then its chunk to
``document_chunks`` (one atomic upsert naming those images). So a chunk is the page's
checkpoint, and a resumed run keeps a page when its chunk is there **and** every image the chunk
names is in the page store, whole. A chunk whose images are gone (removed by hand, lost by the
page store, written by a run that lost its lease while another run's discard ran) is rendered
again, and its upsert replaces the chunk: a page is kept whole or replaced, never half-kept.

Both reads are at majority (``service/store/chapters.py``, the page store's ``keys``), so a
page kept here is one no failover can take back.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from service.domain.page_keys import chapter_prefix
from service.store.database import Store

Doc = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """The pages of a job that are stored whole, and what the job records of them."""

    kept: frozenset[int] = frozenset()  # 0-based page indexes
    problems: list[Doc] = field(default_factory=list)  # their page errors, for the job
    replaced: int = 0  # chunks naming an image that is gone: those pages are rendered again

    def todo(self, total: int) -> list[int]:
        """The pages still to render, in order."""
        return [index for index in range(total) if index not in self.kept]


def _named_keys(chunk: Doc) -> list[str]:
    return [ref["key"] for ref in (chunk.get("image"), chunk.get("thumbnail")) if ref]


def weigh(chunks: list[Doc], present: set[str], total: int) -> Checkpoint:
    """Which stored ``chunks`` are whole, given the image keys ``present`` in the page store."""
    kept: set[int] = set()
    problems: list[Doc] = []
    replaced = 0
    for chunk in chunks:
        index = int(chunk["chunk_index"])
        if not 0 <= index < total:
            continue
        if not all(key in present for key in _named_keys(chunk)):
            replaced += 1
            continue
        kept.add(index)
        warnings = chunk.get("warnings") or []
        if chunk.get("error") or warnings:
            problems.append(
                {"page_number": index + 1, "error": chunk.get("error") or "; ".join(warnings)}
            )
    return Checkpoint(frozenset(kept), sorted(problems, key=lambda p: p["page_number"]), replaced)


async def read_checkpoint(store: Store, job_id: str, chapter_id: str, total: int) -> Checkpoint:
    """The job's pages stored whole so far (none for a job that never stored one)."""
    chunks = await store.chapters.stored_for_resume(job_id)
    if not chunks:
        return Checkpoint()
    named = any(_named_keys(chunk) for chunk in chunks)
    present = await store.images.keys(chapter_prefix(chapter_id)) if named else set()
    return weigh(chunks, present, total)
