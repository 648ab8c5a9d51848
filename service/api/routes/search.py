"""Search in the caller's chapters: ``POST /api/v1/search``."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, post

from service.api.http.body import JSON_BODY_ERRORS, json_body, validated
from service.api.http.dependencies import PrincipalDep, ServicesDep
from service.api.http.image_urls import ImageUrls
from service.api.schemas.common import CALLER_ERRORS, error
from service.api.schemas.search import SearchIn, SearchOut, SearchResultOut
from service.domain.errors import InvalidRequest, InvalidSearch
from service.jobs.search import search


class SearchController(Controller):
    """Passages of the caller's chapters that answer a question."""

    path = "/api/v1/search"
    tags = ["search"]  # noqa: RUF012
    security = [{"BearerToken": []}]  # noqa: RUF012

    @post(
        "/",
        summary="Search my chapters",
        description=(
            "Passages of the caller's indexed chapters that best answer `query`, best first: "
            "`hybrid` (default) fuses a keyword search (the query's words) with a vector search "
            "(its meaning, by the embedding model named in `model`); `keyword` and `vector` use "
            "one. Scope it to a book (`book_id`) or to some chapters (`chapter_ids`, at most "
            "100; another user's is a 404). A chapter is searchable once its `search_status` is "
            "`ready`. Limited to SEARCH_RATE_LIMIT_PER_MINUTE searches a minute per user."
        ),
        status_code=200,
        opt={"error_prefix": "Search failed"},
        responses={
            **JSON_BODY_ERRORS,
            400: error("Invalid query, k, mode, book_id or chapter_ids; `errors` names each"),
            404: error("A chapter id that is not one of the caller's chapters"),
            429: error("Past SEARCH_RATE_LIMIT_PER_MINUTE; Retry-After"),
            **CALLER_ERRORS,
            503: error("MongoDB unreachable, or the embedding model busy or unavailable"),
        },
    )
    async def search(
        self, request: Request[Any, Any, Any], principal: PrincipalDep, services: ServicesDep
    ) -> SearchOut:
        try:
            body = validated(SearchIn, await json_body(request))
        except InvalidRequest as invalid:  # a search's body is its query: a 400, as a query's
            raise InvalidSearch(invalid.detail, invalid.errors) from None
        asked = body.request()
        if not asked.query.strip():
            raise InvalidSearch(
                "Invalid request body", [{"field": "query", "message": "must not be blank"}]
            )
        hits = await search(services, principal.user_id, asked)
        thumbnails = await services.store.chapters.thumbnails(
            [(hit.chunk["chapter_id"], hit.chunk["page_start"] - 1) for hit in hits]
        )
        urls = ImageUrls(request, services)
        results = [
            SearchResultOut(
                chunk_id=hit.chunk["_id"],
                chapter_id=hit.chunk["chapter_id"],
                book_id=hit.chunk["book_id"],
                job_id=hit.chunk["job_id"],
                chapter_title=hit.chapter.get("title") or "",
                page_start=hit.chunk["page_start"],
                page_end=hit.chunk["page_end"],
                page_number=hit.chunk["page_start"],
                section=hit.chunk.get("section"),
                content=hit.chunk["content"],
                snippet=hit.snippet,
                score=round(hit.score, 6),
                thumbnail_url=await urls.of(
                    thumbnails.get((hit.chunk["chapter_id"], hit.chunk["page_start"] - 1))
                ),
            )
            for hit in hits
        ]
        return SearchOut(results=results, mode=asked.mode, model=services.model.name)
