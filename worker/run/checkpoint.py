"""Where an earlier run stopped: the pages a resumed run keeps, and renders no more.

A page is stored in two steps: its images go to the page store, then its document to
``chapter_pages`` (one atomic upsert naming those images). So a page document is the page's
checkpoint, and a resumed run keeps a page when its document is there **and** every image it
names is in the page store, whole. A page whose images are gone (removed by hand, lost by the
page store, written by a run that lost its lease while another run's discard ran) is rendered
again, and its upsert replaces the document: a page is kept whole or replaced, never half-kept.

Both reads are at majority (``service/store/chapters.py``, the page store's ``keys``), so a
page kept here is one no failover can take back.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from service.domain.page_keys import chapter_prefix
from service.store.database import Store
from worker.run.pages import problem_of

Doc = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """The pages of a job that are stored whole, and what the job records of them."""

    kept: frozenset[int] = frozenset()  # 0-based page indexes
    problems: list[Doc] = field(default_factory=list)  # their page errors, for the job
    replaced: int = 0  # pages naming an image that is gone: they are rendered again
    ocr: int = 0  # kept pages whose text was read by OCR (the job counts them)
    # What each kept page's text holding counts (``text_holdings``): the run takes them again,
    # for an earlier run may have stored them and stopped before it took them (``TextMeter``).
    text_bytes: dict[int, int] = field(default_factory=dict)

    def todo(self, total: int) -> list[int]:
        """The pages still to render, in order."""
        return [index for index in range(total) if index not in self.kept]


def _named_keys(page: Doc) -> list[str]:
    return [ref["key"] for ref in (page.get("image"), page.get("thumbnail")) if ref]


def weigh(pages: list[Doc], present: set[str], total: int) -> Checkpoint:
    """Which stored ``pages`` are whole, given the image keys ``present`` in the page store."""
    kept: set[int] = set()
    problems: list[Doc] = []
    text_bytes: dict[int, int] = {}
    replaced = ocr = 0
    for page in pages:
        index = int(page["page_index"])
        if not 0 <= index < total:
            continue
        if not all(key in present for key in _named_keys(page)):
            replaced += 1
            continue
        kept.add(index)
        ocr += page.get("text_source") == "ocr"
        text_bytes[index] = int(page.get("text_bytes") or 0)
        problem = problem_of(index, page.get("error"), tuple(page.get("warnings") or ()))
        if problem is not None:
            problems.append(problem)
    problems.sort(key=lambda p: p["page_number"])
    return Checkpoint(frozenset(kept), problems, replaced, ocr, text_bytes)


async def read_checkpoint(store: Store, job_id: str, chapter_id: str, total: int) -> Checkpoint:
    """The job's pages stored whole so far (none for a job that never stored one)."""
    pages = await store.chapters.stored_for_resume(job_id)
    if not pages:
        return Checkpoint()
    named = any(_named_keys(page) for page in pages)
    present = await store.images.keys(chapter_prefix(chapter_id)) if named else set()
    return weigh(pages, present, total)
