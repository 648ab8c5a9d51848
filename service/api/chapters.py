"""The chapters jobs made: ``/api/v1/books/{book_id}/chapters/{chapter_id}``, its pages, their
images; and the request shape of a chapter's options.

Image URLs are made here, when a chapter or a page list is read, never stored: signed API URLs
for GridFS (``PAGE_URL_TTL_S``), presigned or public URLs for S3 (``service/api/page_images.py``).
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, delete, get
from litestar.params import FromPath, QueryParameter

from service.api.dependencies import PrincipalDep, ServicesDep
from service.api.page_images import ChapterPageOut, ImageUrls
from service.api.responses import OWNER_HIDDEN_ERRORS, Timestamp, error, iso_z
from service.domain.chapter import SLUG_MAX, SLUG_PATTERN, ChapterOptions, ContentMode
from service.domain.errors import NotFound
from service.store.chapters import delete_chapter, page_entry
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
    pages: list[ChapterPageOut]
    pdf_url: str | None  # content mode pdf_file: the PDF itself


class PageOut(msgspec.Struct, kw_only=True):
    """One page of a chapter: its text, and its images."""

    id: str
    chunk_index: int
    page_number: int
    content: str
    background_url: str | None = None
    thumbnail_url: str | None = None
    width: int | None = None
    height: int | None = None
    has_text: bool = True


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


async def _owned_chapter(
    book_id: str, chapter_id: str, user_id: str, fields: dict[str, int] | None = None
) -> dict[str, Any]:
    """The caller's chapter (``fields``: a projection; the whole document, pages included,
    runs to hundreds of KB for a long chapter)."""
    doc: dict[str, Any] | None = await BookChapter.get_pymongo_collection().find_one(
        {"chapter_id": chapter_id, "book_id": book_id, "user_id": user_id},
        {"_id": 0, **(fields or {})},
    )
    if doc is None:  # someone else's chapter is "not found" too: ids are not to be probed
        raise NotFound(f"Chapter {chapter_id[:64]} not found")
    return doc


class ChapterController(Controller):
    """Chapters and their pages, owner-only."""

    path = "/api/v1/books/{book_id:str}/chapters"
    tags = ["chapters"]  # noqa: RUF012
    security = [{"BearerToken": []}]  # noqa: RUF012

    @get(
        "/{chapter_id:str}",
        summary="A chapter, every page with its image URLs",
        responses=NOT_FOUND,
    )
    async def get_chapter(
        self,
        request: Request[Any, Any, Any],
        book_id: FromPath[str],
        chapter_id: FromPath[str],
        principal: PrincipalDep,
        services: ServicesDep,
    ) -> ChapterOut:
        doc = await _owned_chapter(book_id, chapter_id, principal.user_id)
        urls = ImageUrls(request, services)
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
            pages=[await urls.page(entry) for entry in doc.get("pages") or []],
            pdf_url=await urls.of({"key": doc["pdf_key"]}) if doc.get("pdf_key") else None,
        )

    @get("/{chapter_id:str}/pages", summary="A chapter's pages, in order", responses=NOT_FOUND)
    async def list_pages(
        self,
        request: Request[Any, Any, Any],
        book_id: FromPath[str],
        chapter_id: FromPath[str],
        principal: PrincipalDep,
        services: ServicesDep,
        offset: Annotated[int, QueryParameter(ge=0, le=MAX_OFFSET)] = 0,
        limit: Annotated[int, QueryParameter(ge=1, le=100)] = 20,
    ) -> PageListOut:
        chapter = await _owned_chapter(book_id, chapter_id, principal.user_id, {"job_id": 1})
        chunks = DocumentChunk.get_pymongo_collection()
        query = {"chapter_id": chapter_id, "job_id": chapter["job_id"]}
        fields = {"content": 1, "chunk_index": 1, "image": 1, "thumbnail": 1, "has_text": 1}
        cursor = chunks.find(query, fields)
        docs = await cursor.sort("chunk_index", 1).skip(offset).limit(limit).to_list()
        total = await chunks.count_documents(query)
        urls = ImageUrls(request, services)
        items = []
        for doc in docs:
            page = await urls.page(page_entry(doc))
            items.append(
                PageOut(
                    id=doc["_id"],
                    chunk_index=doc["chunk_index"],
                    page_number=page.page_number,
                    content=doc["content"],
                    background_url=page.background_url,
                    thumbnail_url=page.thumbnail_url,
                    width=page.width,
                    height=page.height,
                    has_text=page.has_text,
                )
            )
        return PageListOut(items=items, total=total, offset=offset, limit=limit)

    @delete(
        "/{chapter_id:str}",
        summary="Delete a chapter, its pages and its images",
        status_code=204,
        opt={"error_prefix": "Failed to delete chapter"},
        responses=NOT_FOUND,
    )
    async def remove(
        self,
        book_id: FromPath[str],
        chapter_id: FromPath[str],
        principal: PrincipalDep,
        services: ServicesDep,
    ) -> None:
        if not await delete_chapter(chapter_id, book_id, principal.user_id, services.page_store):
            raise NotFound(f"Chapter {chapter_id[:64]} not found")


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
