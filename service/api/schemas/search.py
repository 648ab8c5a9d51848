"""Search: ``POST /api/v1/search`` and what it answers."""

from __future__ import annotations

from typing import Annotated

import msgspec

from service.api.schemas.common import PrintableId
from service.jobs.search import Mode, SearchRequest

ChapterId = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]


class SearchIn(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """What to look for, and where: every chapter of the caller's by default, one book's
    (``book_id``), or some chapters (``chapter_ids``)."""

    query: Annotated[str, msgspec.Meta(min_length=1, max_length=1000)]
    book_id: PrintableId | None = None
    chapter_ids: Annotated[list[ChapterId], msgspec.Meta(min_length=1, max_length=100)] | None = (
        None
    )
    k: Annotated[int, msgspec.Meta(ge=1, le=50)] = 10
    mode: Mode = Mode.hybrid

    def request(self) -> SearchRequest:
        return SearchRequest(
            query=self.query,
            k=self.k,
            mode=self.mode,
            book_id=self.book_id,
            chapter_ids=tuple(dict.fromkeys(self.chapter_ids)) if self.chapter_ids else None,
        )


class SearchResultOut(msgspec.Struct, kw_only=True):
    """One passage found, best first: where it is (chapter, pages), its text and a snippet."""

    chunk_id: str
    chapter_id: str
    book_id: str
    job_id: str
    chapter_title: str
    page_start: int
    page_end: int
    page_number: int  # where to open the reader: the page the passage starts on
    section: str | None
    content: str
    snippet: str  # about 240 characters around the first of the query's words it holds
    score: float  # higher is better; its scale depends on the mode
    thumbnail_url: str | None  # the start page's thumbnail (null for a pdf_file chapter)


class SearchOut(msgspec.Struct, kw_only=True):
    """The results, the mode they were found by, and the embedding model of the vectors."""

    results: list[SearchResultOut]
    mode: Mode
    model: str
