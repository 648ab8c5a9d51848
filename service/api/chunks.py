"""Seed 004: a job's chunks (one per PDF page) in a ``{success, data, error}`` envelope.

Every answer of these endpoints, errors included, is that envelope: a client written for seed
004 reads ``error.code`` (``VALIDATION_ERROR``, ``JOB_NOT_FOUND``, ``RATE_LIMITED``, ...), never
another shape. Listing is limited per user in Redis (``list_chunks:<user_id>``).
"""

from __future__ import annotations

import asyncio
from enum import StrEnum
from typing import Annotated, Any

import msgspec
from litestar import Controller, Response, get
from litestar.openapi import ResponseSpec
from litestar.params import FromPath, FromQuery, QueryParameter

from service.api.dependencies import PrincipalDep, ServicesDep
from service.api.errors import ENVELOPE
from service.api.responses import Timestamp, iso_z
from service.api.responses import error as error_response
from service.domain.errors import InvalidParameter, NotFound
from service.store.documents import DocumentChunk
from service.store.job_store import canonical_job_id, find_owned_job

CONTENT_PREVIEW_CHARS = 500


class ChunkMetadataOut(msgspec.Struct, kw_only=True):
    source_file: str
    page_number: int
    total_pages: int


class ChunkOut(msgspec.Struct, kw_only=True):
    """A chunk (one page) in a list: ``content`` is its first 500 characters."""

    id: str
    job_id: str
    chunk_index: int
    content: str
    metadata: ChunkMetadataOut
    created_at: Timestamp
    updated_at: Timestamp


class ChunkDetailOut(ChunkOut, kw_only=True):
    """``GET /api/v1/chunks/{chunk_id}``: the whole chunk, its full content."""

    chapter_id: str


class PaginationOut(msgspec.Struct, kw_only=True):
    total: int
    page: int
    per_page: int
    total_pages: int
    has_next: bool
    has_prev: bool


class ChunkPageOut(msgspec.Struct, kw_only=True):
    chunks: list[ChunkOut]
    pagination: PaginationOut


class ApiErrorOut(msgspec.Struct, kw_only=True, omit_defaults=True):
    """Seed 004's error: a stable ``code``, a message, and for bad input ``{field, value}``."""

    code: str
    message: str
    details: dict[str, Any] | None = None


class ChunkListEnvelope(msgspec.Struct, kw_only=True):
    success: bool
    data: ChunkPageOut | None
    error: ApiErrorOut | None


class ChunkEnvelope(msgspec.Struct, kw_only=True):
    success: bool
    data: ChunkDetailOut | None
    error: ApiErrorOut | None


class ErrorEnvelope(msgspec.Struct, kw_only=True):
    success: bool
    data: None
    error: ApiErrorOut


def chunk_fields(doc: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": doc["_id"],
        "job_id": doc["job_id"],
        "chunk_index": doc["chunk_index"],
        "content": doc["content"],
        "metadata": ChunkMetadataOut(**doc["metadata"]),
        "created_at": iso_z(doc["created_at"]),
        "updated_at": iso_z(doc["updated_at"]),
    }


def pagination_out(total: int, offset: int, limit: int) -> PaginationOut:
    return PaginationOut(
        total=total,
        page=offset // limit + 1,
        per_page=limit,
        total_pages=-(-total // limit),
        has_next=offset + limit < total,
        has_prev=offset > 0,
    )


class SortBy(StrEnum):
    created_at = "created_at"
    chunk_index = "chunk_index"
    updated_at = "updated_at"


class SortOrder(StrEnum):
    asc = "asc"
    desc = "desc"


def envelope_error(description: str) -> ResponseSpec:
    return error_response(description, ErrorEnvelope)


ERRORS = {
    401: envelope_error("Missing, invalid or expired Firebase ID token (UNAUTHORIZED)"),
    500: envelope_error("Unexpected failure (INTERNAL_ERROR); carries a request id"),
    503: envelope_error("MongoDB unreachable (SERVICE_UNAVAILABLE); retry after Retry-After"),
}

PREVIEW_FIELDS = {
    "job_id": 1,
    "chunk_index": 1,
    "metadata": 1,
    "created_at": 1,
    "updated_at": 1,
    "content": {"$substrCP": ["$content", 0, CONTENT_PREVIEW_CHARS]},
}


async def _preview_page(
    job_id: str, order: dict[str, int], offset: int, limit: int
) -> list[dict[str, Any]]:
    """One page of a job's chunks, their content cut short by MongoDB before it is sent."""
    cursor = await DocumentChunk.get_pymongo_collection().aggregate(
        [
            {"$match": {"job_id": job_id}},
            {"$sort": order},
            {"$skip": offset},
            {"$limit": limit},
            {"$project": PREVIEW_FIELDS},
        ]
    )
    page: list[dict[str, Any]] = await cursor.to_list()
    return page


class ChunkController(Controller):
    """Seed 004: list a job's chunks; read one chunk whole."""

    path = "/api/v1"
    tags = ["chunks"]  # noqa: RUF012
    security = [{"BearerToken": []}]  # noqa: RUF012
    # Every error of these endpoints, Litestar's own included, renders as seed 004's envelope
    # (service/api/errors.py).
    opt = {ENVELOPE: True}  # noqa: RUF012

    @get(
        "/jobs/{job_id:str}/chunks",
        summary="List a job's chunks (pages), paginated and sorted",
        opt={"error_prefix": "Failed to list chunks"},
        description=(
            "Seed 004. `content` is the first 500 characters of each chunk; read a chunk whole "
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
        quota = await services.limiter.hit(
            f"list_chunks:{principal.user_id}",
            services.settings.chunks_rate_limit_per_minute,
        )
        canonical = canonical_job_id(job_id)
        if canonical is None:
            raise InvalidParameter("job_id", job_id, "Invalid job_id format")
        job = await find_owned_job(canonical, principal.user_id, {"job_id": 1})
        if job is None:
            raise NotFound(f"Job with ID {canonical} not found", code="JOB_NOT_FOUND")
        chunks = DocumentChunk.get_pymongo_collection()
        direction = 1 if sort_order is SortOrder.asc else -1
        order = {sort_by.value: direction, "chunk_index": direction}  # chunk_index breaks ties
        page, total = await asyncio.gather(
            _preview_page(canonical, order, offset, limit),
            chunks.count_documents({"job_id": canonical}),
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
        opt={"error_prefix": "Failed to get chunk"},
        responses={
            400: envelope_error("Malformed chunk id (VALIDATION_ERROR)"),
            404: envelope_error("No such chunk of the caller's (CHUNK_NOT_FOUND)"),
            **ERRORS,
        },
    )
    async def get_chunk(self, chunk_id: FromPath[str], principal: PrincipalDep) -> ChunkEnvelope:
        canonical = canonical_job_id(chunk_id)
        if canonical is None:
            raise InvalidParameter("chunk_id", chunk_id, "Invalid chunk_id format")
        doc = await DocumentChunk.get_pymongo_collection().find_one(
            {"_id": canonical, "user_id": principal.user_id}
        )
        if doc is None:
            raise NotFound(f"Chunk with ID {canonical} not found", code="CHUNK_NOT_FOUND")
        chunk = ChunkDetailOut(**chunk_fields(doc), chapter_id=doc["chapter_id"])
        return ChunkEnvelope(success=True, data=chunk, error=None)
