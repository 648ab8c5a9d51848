"""The chapters jobs made: ``/api/v1/books/{book_id}/chapters/{chapter_id}``, its pages, their
image URLs (made when the chapter is read, never stored: ``service/api/http/image_urls.py``)."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, Response, delete, get
from litestar.openapi import ResponseSpec
from litestar.params import FromPath, QueryParameter
from litestar.status_codes import HTTP_304_NOT_MODIFIED

from service.api.http.dependencies import PrincipalDep, ServicesDep
from service.api.http.etag import etag_matches
from service.api.http.image_urls import ImageUrls
from service.api.schemas.chapters import (
    MAX_OFFSET,
    ChapterOut,
    OutlineEntryOut,
    PageLinkOut,
    PageListOut,
    PageOut,
    PageWordsOut,
)
from service.api.schemas.common import OWNER_HIDDEN_ERRORS, error, iso_z
from service.domain.chapter import ContentMode
from service.domain.indexing import public_status
from service.jobs.chapters import chapter_pages, delete_chapter, get_chapter, page_words
from service.store.chapters import page_entry

NOT_FOUND = {
    **OWNER_HIDDEN_ERRORS,
    404: error("No such chapter of the caller's"),
}


class ChapterController(Controller):
    """Chapters and their pages, owner-only."""

    path = "/api/v1/books/{book_id:str}/chapters"
    tags = ["chapters"]  # noqa: RUF012
    security = [{"BearerToken": []}]  # noqa: RUF012

    @get(
        "/{chapter_id:str}",
        summary="A chapter, every page with its image URLs",
        description=(
            "The chapter with its outline (`[{level, title, page}]`), its search index's state, "
            "how many pages were read by OCR or have no text, and every page with signed image "
            "URLs valid until `urls_expire_at` (read it again before then). `pages=false` leaves "
            "the page list out: a long chapter's pages are then read in windows from `/pages`."
        ),
        responses=NOT_FOUND,
    )
    async def get_chapter(
        self,
        request: Request[Any, Any, Any],
        book_id: FromPath[str],
        chapter_id: FromPath[str],
        principal: PrincipalDep,
        services: ServicesDep,
        pages: Annotated[
            bool,
            QueryParameter(
                description="false: leave the page list out (`pages` is empty); a long "
                "chapter's pages are then read in windows from `.../pages?text=false`"
            ),
        ] = True,
    ) -> ChapterOut:
        fields = None if pages else {"pages": 0}
        doc = await get_chapter(services, book_id, chapter_id, principal.user_id, fields)
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
            outline=[
                OutlineEntryOut(level=int(level), title=str(title), page=int(page))
                for level, title, page in doc.get("outline") or []
            ],
            search_status=public_status(doc.get("search"), services.model.name),
            ocr_pages=int(doc.get("ocr_pages") or 0),
            pages_without_text=int(doc.get("pages_without_text") or 0),
            urls_expire_at=urls.expire_at(),
        )

    @get(
        "/{chapter_id:str}/pages",
        summary="A chapter's pages, in order",
        description=(
            "A window of the chapter's pages (`offset`, `limit` 1-100) with their text, image "
            "URLs (valid until `urls_expire_at`), sizes and where their text came from "
            "(`text_source`: pdf, ocr or none). `text=false` leaves the text out: what a reader "
            "needs to show pages and thumbnails."
        ),
        responses=NOT_FOUND,
    )
    async def list_pages(
        self,
        request: Request[Any, Any, Any],
        book_id: FromPath[str],
        chapter_id: FromPath[str],
        principal: PrincipalDep,
        services: ServicesDep,
        offset: Annotated[int, QueryParameter(ge=0, le=MAX_OFFSET)] = 0,
        limit: Annotated[int, QueryParameter(ge=1, le=100)] = 20,
        text: Annotated[
            bool,
            QueryParameter(description="false: the pages without their text (`content` left out)"),
        ] = True,
    ) -> PageListOut:
        docs, total = await chapter_pages(
            services,
            book_id,
            chapter_id,
            principal.user_id,
            offset=offset,
            limit=limit,
            text=text,
        )
        urls = ImageUrls(request, services)
        items = []
        for doc in docs:
            page = await urls.page(page_entry(doc))
            items.append(
                PageOut(
                    id=doc["_id"],
                    chunk_index=doc["page_index"],
                    page_number=page.page_number,
                    content=doc["content"] if text else msgspec.UNSET,
                    background_url=page.background_url,
                    thumbnail_url=page.thumbnail_url,
                    width=page.width,
                    height=page.height,
                    has_text=page.has_text,
                    text_source=page.text_source,
                    ocr_confidence=page.ocr_confidence,
                )
            )
        return PageListOut(
            items=items,
            total=total,
            offset=offset,
            limit=limit,
            urls_expire_at=urls.expire_at(),
        )

    @get(
        "/{chapter_id:str}/pages/{page_number:int}/words",
        summary="A page's words where they stand, for a text layer over its image",
        description=(
            "Each word as `[x0, y0, x1, y1, word, block, line]` in the pixels of the page image "
            "(`width` x `height`, the size of its `background_url`), in reading order: from the "
            "PDF's own text, or from OCR for a scanned page. Cached like the images: send the "
            "ETag back in If-None-Match for a 304."
        ),
        responses={
            200: ResponseSpec(
                PageWordsOut, generate_examples=False, description="The page's words and links"
            ),
            **NOT_FOUND,
            304: ResponseSpec(
                None, generate_examples=False, description="Unchanged since the ETag sent"
            ),
            404: error("No such chapter of the caller's, or no such page in it"),
        },
    )
    async def page_words(
        self,
        request: Request[Any, Any, Any],
        book_id: FromPath[str],
        chapter_id: FromPath[str],
        page_number: FromPath[int],
        principal: PrincipalDep,
        services: ServicesDep,
    ) -> Response[Any]:
        found = await page_words(services, book_id, chapter_id, page_number, principal.user_id)
        etag = f'"{found.digest}"'
        headers = {"ETag": etag, "Cache-Control": "private, no-cache"}
        if etag_matches(request.headers.get("if-none-match"), etag):
            return Response(content=b"", status_code=HTTP_304_NOT_MODIFIED, headers=headers)
        links = [
            PageLinkOut(x0=k.x0, y0=k.y0, x1=k.x1, y1=k.y1, page=k.page, uri=k.uri)
            for k in found.links
        ]
        out = PageWordsOut(width=found.width, height=found.height, words=found.words, links=links)
        return Response(out, headers=headers)

    @delete(
        "/{chapter_id:str}",
        summary="Delete a chapter, its pages and its images",
        description=(
            "Removes the chapter, its pages' images, text and words, and its search passages. "
            "The job that made it stays, and says so (`chapter_deleted_at`); the uploaded PDF "
            "stays. The page store unreachable: 503, and nothing is deleted."
        ),
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
        await delete_chapter(services, book_id, chapter_id, principal.user_id)
