"""The chapters jobs made: ``GET /api/v1/books/{book_id}/chapters/{chapter_id}`` and its pages."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import Controller, get
from litestar.params import FromPath, QueryParameter

from service.api.dependencies import PrincipalDep
from service.api.responses import OWNER_HIDDEN_ERRORS, Timestamp, error, iso_z
from service.domain.chapter import SLUG_MAX, SLUG_PATTERN, ChapterOptions, ContentMode
from service.domain.errors import NotFound
from service.store.documents import BookChapter, DocumentChunk


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


class PageOut(msgspec.Struct, kw_only=True):
    """One page of a chapter."""

    id: str
    chunk_index: int
    page_number: int
    content: str


class PageListOut(msgspec.Struct, kw_only=True):
    items: list[PageOut]
    total: int
    offset: int
    limit: int


# A chapter has at most MAX_PAGES pages; an unbounded offset reached MongoDB's skip as an
# int64 overflow (a 500).
MAX_OFFSET = 1_000_000

NOT_FOUND = {
    **OWNER_HIDDEN_ERRORS,
    404: error("No such chapter of the caller's"),
}


async def _owned_chapter(book_id: str, chapter_id: str, user_id: str) -> dict[str, Any]:
    doc: dict[str, Any] | None = await BookChapter.get_pymongo_collection().find_one(
        {"chapter_id": chapter_id, "book_id": book_id, "user_id": user_id}, {"_id": 0}
    )
    if doc is None:  # someone else's chapter is "not found" too: ids are not to be probed
        raise NotFound(f"Chapter {chapter_id[:64]} not found")
    return doc


class ChapterController(Controller):
    """Chapters and their pages, owner-only."""

    path = "/api/v1/books/{book_id:str}/chapters"
    tags = ["chapters"]  # noqa: RUF012
    security = [{"BearerToken": []}]  # noqa: RUF012

    @get("/{chapter_id:str}", summary="A chapter", responses=NOT_FOUND)
    async def get_chapter(
        self, book_id: FromPath[str], chapter_id: FromPath[str], principal: PrincipalDep
    ) -> ChapterOut:
        doc = await _owned_chapter(book_id, chapter_id, principal.user_id)
        return ChapterOut(
            chapter_id=doc["chapter_id"],
            book_id=doc["book_id"],
            job_id=doc["job_id"],
            title=doc["title"],
            slug=doc.get("slug"),
            order_index=doc.get("order_index"),
            parent_id=doc.get("parent_id"),
            is_published=bool(doc.get("is_published")),
            is_preview_free=bool(doc.get("is_preview_free")),
            content_mode=ContentMode(doc.get("content_mode") or ContentMode.pdf_pages),
            total_pages=doc["total_pages"],
            source_file_id=doc["source_file_id"],
            source_filename=doc["source_filename"],
            repaired=bool(doc.get("repaired")),
            created_at=iso_z(doc["created_at"]),
        )

    @get("/{chapter_id:str}/pages", summary="A chapter's pages, in order", responses=NOT_FOUND)
    async def list_pages(
        self,
        book_id: FromPath[str],
        chapter_id: FromPath[str],
        principal: PrincipalDep,
        offset: Annotated[int, QueryParameter(ge=0, le=MAX_OFFSET)] = 0,
        limit: Annotated[int, QueryParameter(ge=1, le=100)] = 20,
    ) -> PageListOut:
        chapter = await _owned_chapter(book_id, chapter_id, principal.user_id)
        chunks = DocumentChunk.get_pymongo_collection()
        query = {"chapter_id": chapter_id, "job_id": chapter["job_id"]}
        cursor = chunks.find(query, {"content": 1, "chunk_index": 1, "metadata.page_number": 1})
        docs = await cursor.sort("chunk_index", 1).skip(offset).limit(limit).to_list()
        total = await chunks.count_documents(query)
        return PageListOut(
            items=[
                PageOut(
                    id=doc["_id"],
                    chunk_index=doc["chunk_index"],
                    page_number=doc["metadata"]["page_number"],
                    content=doc["content"],
                )
                for doc in docs
            ],
            total=total,
            offset=offset,
            limit=limit,
        )


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
        """The domain's view; seed 003 names the title outside the payload."""
        return ChapterOptions(
            title=title or self.title,
            slug=self.slug,
            order_index=self.order_index,
            parent_id=self.parent_id,
            is_published=self.is_published,
            is_preview_free=self.is_preview_free,
            content_mode=self.content_mode,
        )
