"""Seed 004: a job's chunks (one per PDF page) in a ``{success, data, error}`` envelope.

Every answer of these endpoints, errors included, is that envelope: a client written for seed
004 reads ``error.code`` (``VALIDATION_ERROR``, ``JOB_NOT_FOUND``, ``RATE_LIMITED``, ...), never
another shape. Listing is limited per user in Redis (``list_chunks:<user_id>``).
"""

from __future__ import annotations

import asyncio
import logging
from enum import StrEnum
from typing import Annotated, Any

from litestar import Controller, Request, Response, get
from litestar.exceptions import HTTPException, ValidationException
from litestar.openapi import ResponseSpec
from litestar.params import FromPath, FromQuery, QueryParameter
from pymongo.errors import ConnectionFailure

from service.dependencies import PrincipalDep, ServicesDep
from service.errors import NO_STORE, DependencyUnavailable, NotAuthenticated, ServiceError
from service.jobs import canonical_job_id, find_owned_job
from service.models import DocumentChunk
from service.rate_limit import RateLimited
from service.request_id import request_id_of
from service.routes.responses import error as error_response
from service.schemas import (
    CONTENT_PREVIEW_CHARS,
    ApiErrorOut,
    ChunkDetailOut,
    ChunkEnvelope,
    ChunkListEnvelope,
    ChunkOut,
    ChunkPageOut,
    ErrorEnvelope,
    chunk_fields,
    pagination_out,
)

log = logging.getLogger("service.chunks")


class SortBy(StrEnum):
    created_at = "created_at"
    chunk_index = "chunk_index"
    updated_at = "updated_at"


class SortOrder(StrEnum):
    asc = "asc"
    desc = "desc"


class EnvelopeError(ServiceError):
    """A seed 004 error: a status, a stable code and, for bad input, the field and value."""

    def __init__(
        self, status: int, code: str, message: str, details: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.status_code = status
        self.code = code
        self.details = details


def invalid(field: str, value: Any, message: str) -> EnvelopeError:
    """A 400 naming the field and echoing at most 64 characters of what the client sent."""
    shown = value[:64] if isinstance(value, str) else value
    return EnvelopeError(400, "VALIDATION_ERROR", message, {"field": field, "value": shown})


def _envelope(
    status: int, error: ApiErrorOut, headers: dict[str, str] | None = None
) -> Response[ErrorEnvelope]:
    return Response(
        ErrorEnvelope(success=False, data=None, error=error),
        status_code=status,
        headers={**NO_STORE, **(headers or {})},
    )


def _service_error(request: Request[Any, Any, Any], exc: ServiceError) -> Response[ErrorEnvelope]:
    if isinstance(exc, EnvelopeError):
        error = ApiErrorOut(code=exc.code, message=exc.detail, details=exc.details)
    elif isinstance(exc, NotAuthenticated):
        error = ApiErrorOut(code="UNAUTHORIZED", message=exc.detail)
    elif isinstance(exc, RateLimited):
        error = ApiErrorOut(code="RATE_LIMITED", message=exc.detail)
    elif exc.status_code == 503:
        error = ApiErrorOut(code="SERVICE_UNAVAILABLE", message=exc.detail)
    else:
        return _unexpected(request, exc)
    return _envelope(exc.status_code, error, exc.headers)


def _http_exception(request: Request[Any, Any, Any], exc: HTTPException) -> Response[ErrorEnvelope]:
    """Litestar's own errors; a bad query parameter becomes seed 004's VALIDATION_ERROR."""
    if isinstance(exc, ValidationException):
        problems = exc.extra if isinstance(exc.extra, list) else []
        field = str(problems[0].get("key", "query")) if problems else "query"
        message = f"Invalid {field}" + (f": {problems[0]['message']}" if problems else "")
        return _service_error(request, invalid(field, request.query_params.get(field), message))
    code = "METHOD_NOT_ALLOWED" if exc.status_code == 405 else "BAD_REQUEST"
    return _envelope(exc.status_code, ApiErrorOut(code=code, message=exc.detail), exc.headers)


def _unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[ErrorEnvelope]:
    if isinstance(exc, ConnectionFailure):
        return _service_error(request, DependencyUnavailable("database"))
    request_id = request_id_of(request)
    log.exception("unhandled error", extra={"request_id": request_id, "path": request.url.path})
    prefix = request.route_handler.opt.get("error_prefix", "Request failed")
    error = ApiErrorOut(
        code="INTERNAL_ERROR",
        message=f"{prefix}: internal error (request id {request_id})",
        details={"request_id": request_id},
    )
    return _envelope(500, error)  # the request id middleware adds X-Request-ID


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
    exception_handlers = {  # noqa: RUF012
        ServiceError: _service_error,
        HTTPException: _http_exception,
        # Named although _unexpected covers it: the app's own ConnectionFailure handler would
        # otherwise match first (handlers are looked up by the exception's class hierarchy).
        ConnectionFailure: _unexpected,
        Exception: _unexpected,
    }

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
            raise invalid("job_id", job_id, "Invalid job_id format")
        job = await find_owned_job(canonical, principal.user_id, {"job_id": 1})
        if job is None:
            raise EnvelopeError(404, "JOB_NOT_FOUND", f"Job with ID {canonical} not found")
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
            raise invalid("chunk_id", chunk_id, "Invalid chunk_id format")
        doc = await DocumentChunk.get_pymongo_collection().find_one(
            {"_id": canonical, "user_id": principal.user_id}
        )
        if doc is None:
            raise EnvelopeError(404, "CHUNK_NOT_FOUND", f"Chunk with ID {canonical} not found")
        chunk = ChunkDetailOut(**chunk_fields(doc), chapter_id=doc["chapter_id"])
        return ChunkEnvelope(success=True, data=chunk, error=None)
