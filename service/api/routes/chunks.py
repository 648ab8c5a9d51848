"""The chunk-listing contract: a job's chunks in a ``{success, data, error}`` envelope.

Every answer of these endpoints, errors included, is that envelope: a client written for the
contract reads ``error.code`` (``VALIDATION_ERROR``, ``JOB_NOT_FOUND``, ``RATE_LIMITED``, ...),
never another shape. Listing is limited per user in Redis (``list_chunks:<user_id>``).
"""

from __future__ import annotations

from typing import Annotated

from litestar import Controller, Response, get
from litestar.params import FromPath, FromQuery, QueryParameter

from service.api.http.dependencies import PrincipalDep, ServicesDep
from service.api.http.errors import ENVELOPE
from service.api.schemas.chunks import (
    ERRORS,
    ChunkEnvelope,
    ChunkListEnvelope,
    ChunkOut,
    ChunkPageOut,
    SortBy,
    SortOrder,
    chunk_detail,
    chunk_fields,
    envelope_error,
    pagination_out,
)
from service.jobs.chunks import get_chunk, list_chunks


class ChunkController(Controller):
    """The chunk-listing contract: list a job's chunks; read one chunk whole."""

    path = "/api/v1"
    tags = ["chunks"]  # noqa: RUF012
    security = [{"BearerToken": []}]  # noqa: RUF012
    # Every error of these endpoints, Litestar's own included, renders as the contract's
    # envelope (service/api/http/errors.py).
    opt = {ENVELOPE: True}  # noqa: RUF012

    @get(
        "/jobs/{job_id:str}/chunks",
        summary="List a job's chunks (pages), paginated and sorted",
        opt={"error_prefix": "Failed to list chunks"},
        description=(
            "`content` is the first 500 characters of each chunk; read a chunk whole "
            "with `GET /api/v1/chunks/{chunk_id}`. Limited to CHUNKS_RATE_LIMIT_PER_MINUTE "
            "requests a minute per user (RateLimit-* headers)."
        ),
        responses={
            400: envelope_error("Malformed job id or query parameter (VALIDATION_ERROR)"),
            404: envelope_error("No such job of the caller's (JOB_NOT_FOUND)"),
            429: envelope_error("Rate limit exceeded (RATE_LIMITED); retry after Retry-After"),
            **ERRORS,
        },
    )
    async def list_chunks(
        self,
        job_id: FromPath[str],
        principal: PrincipalDep,
        services: ServicesDep,
        limit: Annotated[int, QueryParameter(ge=1, le=100)] = 20,
        offset: Annotated[int, QueryParameter(ge=0, le=1_000_000)] = 0,
        sort_by: FromQuery[SortBy] = SortBy.chunk_index,
        sort_order: FromQuery[SortOrder] = SortOrder.asc,
    ) -> Response[ChunkListEnvelope]:
        direction = 1 if sort_order is SortOrder.asc else -1
        order = {sort_by.value: direction, "chunk_index": direction}  # chunk_index breaks ties
        quota, page, total = await list_chunks(
            services, job_id, principal.user_id, order=order, offset=offset, limit=limit
        )
        data = ChunkPageOut(
            chunks=[ChunkOut(**chunk_fields(doc)) for doc in page],
            pagination=pagination_out(total, offset, limit),
        )
        return Response(
            ChunkListEnvelope(success=True, data=data, error=None),
            headers=quota.headers() if quota else {},
        )

    @get(
        "/chunks/{chunk_id:str}",
        summary="One chunk, its whole content",
        description=(
            "The chunk-listing contract's detail, in its `{success, data, error}` envelope: the "
            "passage's whole content, where it stands in its chapter (`page_start`, `page_end`, "
            "`section`) and its embedding vector (null until the chapter is indexed). Another "
            "user's chunk is `CHUNK_NOT_FOUND`."
        ),
        opt={"error_prefix": "Failed to get chunk"},
        responses={
            400: envelope_error("Malformed chunk id (VALIDATION_ERROR)"),
            404: envelope_error("No such chunk of the caller's (CHUNK_NOT_FOUND)"),
            **ERRORS,
        },
    )
    async def get_chunk(
        self, chunk_id: FromPath[str], principal: PrincipalDep, services: ServicesDep
    ) -> ChunkEnvelope:
        doc = await get_chunk(services, chunk_id, principal.user_id)
        return ChunkEnvelope(success=True, data=chunk_detail(doc), error=None)
