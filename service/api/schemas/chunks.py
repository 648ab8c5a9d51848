"""The chunk-listing contract's shapes: chunks, their pagination, and the ``{success, data,
error}`` envelope every answer of its endpoints is wrapped in."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

import msgspec
from bson import Binary
from litestar.openapi import ResponseSpec

from service.api.schemas.common import Timestamp, iso_z
from service.api.schemas.common import error as error_response


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
    """``GET /api/v1/chunks/{chunk_id}``: the whole chunk: its full content, where it stands in
    its chapter, and its embedding vector (null until the chapter is indexed)."""

    chapter_id: str
    page_start: int | None = None
    page_end: int | None = None
    section: str | None = None
    token_count: int | None = None
    embedding: list[float] | None = None
    embedding_model: str | None = None


def chunk_detail(doc: dict[str, Any]) -> ChunkDetailOut:
    """A stored chunk, whole: its BSON vector as numbers."""
    vector = doc.get("embedding")
    return ChunkDetailOut(
        **chunk_fields(doc),
        chapter_id=doc["chapter_id"],
        page_start=doc.get("page_start"),
        page_end=doc.get("page_end"),
        section=doc.get("section"),
        token_count=doc.get("token_count"),
        embedding=None
        if vector is None
        else [float(x) for x in Binary(vector, 9).as_vector().data],
        embedding_model=doc.get("embedding_model"),
    )


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
    """The chunk-listing contract's error: a stable ``code``, a message, and for bad input
    ``{field, value}``."""

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
