"""Chapters and their pages: the shapes a chapter, its page list and its pages are shown in, and
the request shape of a chapter's options."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, Literal

import msgspec

from service.api.schemas.common import Timestamp
from service.domain.chapter import SLUG_MAX, SLUG_PATTERN, ChapterOptions, ContentMode
from service.domain.indexing import SearchStatus
from service.domain.name import clean_title

TextSource = Literal["pdf", "ocr", "none"]


class ChapterPageOut(msgspec.Struct, kw_only=True):
    """One page as the book editor shows it: its image is the page's background, ``elements``
    are what the editor adds on top (none yet). ``has_text: false`` is an image-only (scanned)
    page. URLs are null for a ``pdf_file`` chapter, which has no page images."""

    page_number: int
    background_url: str | None
    thumbnail_url: str | None
    width: int | None
    height: int | None
    has_text: bool
    elements: list[Any] = msgspec.field(default_factory=list)
    # Where the page's text came from: pdf (its text layer), ocr (read from its image), none.
    text_source: TextSource = "pdf"
    # For an OCR page, the mean confidence (0-100) of the words read; else null.
    ocr_confidence: float | None = None


class OutlineEntryOut(msgspec.Struct, kw_only=True):
    """One entry of a PDF's outline (its table of contents): its depth from 1, its title, and
    the page of the chapter it opens (from 1)."""

    level: int
    title: str
    page: int


class ChapterOut(msgspec.Struct, kw_only=True):
    """A chapter made from a PDF."""

    chapter_id: str
    book_id: str
    job_id: str
    title: str
    slug: str | None
    order_index: int | None
    parent_id: str | None
    is_published: bool
    is_preview_free: bool
    content_mode: ContentMode
    total_pages: int
    source_file_id: str
    source_filename: str
    # MuPDF had to rebuild a damaged file to read it: some pages may be blank or partial.
    repaired: bool
    created_at: Timestamp
    pages: list[ChapterPageOut]
    pdf_url: str | None  # content mode pdf_file: the PDF itself
    # The PDF's outline (table of contents), in order; empty when the PDF has none.
    outline: list[OutlineEntryOut] = msgspec.field(default_factory=list)
    # Where the chapter's search index stands (pending, indexing, ready, failed, or stale:
    # indexed by another embedding model than the service's); the chapter reads at once.
    search_status: SearchStatus = SearchStatus.pending
    # Pages whose text was read by OCR (scanned pages), and pages with no text at all.
    ocr_pages: int = 0
    pages_without_text: int = 0
    # When the image URLs of ``pages`` stop working (null: they do not expire); read the chapter
    # again before then for fresh ones.
    urls_expire_at: Timestamp | None = None


class PageOut(msgspec.Struct, kw_only=True):
    """One page of a chapter: its text (left out when the list was asked ``text=false``), and
    its images."""

    id: str
    chunk_index: int
    page_number: int
    content: str | msgspec.UnsetType = msgspec.UNSET
    background_url: str | None = None
    thumbnail_url: str | None = None
    width: int | None = None
    height: int | None = None
    has_text: bool = True
    text_source: TextSource = "pdf"
    ocr_confidence: float | None = None


class PageListOut(msgspec.Struct, kw_only=True):
    """A window of a chapter's pages, in order, and how many it has."""

    items: list[PageOut]
    total: int
    offset: int
    limit: int
    # When the image URLs of ``items`` stop working (null: they do not expire).
    urls_expire_at: Timestamp | None = None


# A chapter has at most MAX_PAGES pages; an unbounded offset reached MongoDB's skip as an
# int64 overflow (a 500).
MAX_OFFSET = 1_000_000


class ChapterOptionsIn(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The chapter a job makes, as the create request may shape it (all optional).

    ``title``: else the PDF's metadata title, else the file name. ``slug``: unique in the book,
    made from the title when absent. ``content_mode``: ``pdf_pages`` renders every page to an
    image; ``pdf_file`` keeps the PDF itself (the chapter carries ``pdf_url``).
    """

    title: Annotated[str, msgspec.Meta(min_length=1, max_length=200)] | None = None
    slug: Annotated[str, msgspec.Meta(max_length=SLUG_MAX, pattern=SLUG_PATTERN)] | None = None
    order_index: Annotated[int, msgspec.Meta(ge=0, le=1_000_000)] | None = None
    parent_id: Annotated[str, msgspec.Meta(min_length=1, max_length=64)] | None = None
    is_published: bool = False
    is_preview_free: bool = False
    content_mode: ContentMode = ContentMode.pdf_pages

    def options(self, title: str | None = None) -> ChapterOptions:
        """The domain's view; the job router names the title outside the payload. The title is
        cleaned as file names are (no control, line break, bidi or zero-width character): one
        that is nothing else is no title, and the PDF's or the file's name is used."""
        return ChapterOptions(
            title=clean_title(title or self.title),
            slug=self.slug,
            order_index=self.order_index,
            parent_id=self.parent_id,
            is_published=self.is_published,
            is_preview_free=self.is_preview_free,
            content_mode=self.content_mode,
        )


class PageLinkOut(msgspec.Struct, kw_only=True):
    """A link on a page: its box in the pixels of the page image, and where it goes: ``page``,
    a page of this chapter (from 1), or ``uri``, an http, https or mailto URI (the other is
    null). Links of other kinds (to another file, to run a program) are not kept."""

    x0: int
    y0: int
    x1: int
    y1: int
    page: int | None = None
    uri: str | None = None


class PageWordsOut(msgspec.Struct, kw_only=True):
    """A page's words where they stand: each ``[x0, y0, x1, y1, word, block, line]`` in the
    pixels of the page image (``width`` x ``height``), in reading order; from the PDF's own
    text layer, or from OCR for a scanned page. ``links``: the page's links in the same
    pixels."""

    width: int
    height: int
    words: Sequence[tuple[int, int, int, int, str, int, int]]
    links: list[PageLinkOut] = msgspec.field(default_factory=list)
