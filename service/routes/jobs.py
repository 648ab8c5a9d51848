"""Seed 002: the polling endpoint ``GET /api/v1/books/jobs/{job_id}``."""

from __future__ import annotations

from typing import Any, cast
from uuid import UUID

import msgspec
from litestar import Controller, MediaType, Request, Response, get
from litestar.openapi import ResponseSpec
from litestar.params import FromPath
from litestar.status_codes import HTTP_304_NOT_MODIFIED

from service.auth import Principal
from service.dependencies import PrincipalDep, ServicesDep
from service.errors import AccessDenied, JobNotFound
from service.models import JobStatus, PdfChapterJob
from service.schemas import JOB_STATUS_FIELDS, ErrorOut, JobStatusOut, job_status_out
from service.state import Services

ENCODE = msgspec.json.Encoder().encode

ERROR_RESPONSES = {
    401: ResponseSpec(ErrorOut, description="Missing, invalid or expired Firebase ID token"),
    403: ResponseSpec(ErrorOut, description="The job belongs to another user"),
    404: ResponseSpec(ErrorOut, description="No such job"),
    500: ResponseSpec(ErrorOut, description="Unexpected failure; carries a request id"),
    503: ResponseSpec(ErrorOut, description="MongoDB unreachable; retry after Retry-After"),
}


def canonical_job_id(raw: str) -> str | None:
    """The canonical form of a UUID job id, or None when it is not one."""
    try:
        return str(UUID(raw))
    except ValueError:
        return None


def etag_of(doc: dict[str, Any]) -> str:
    """A strong validator: every write to a job bumps its ``version``."""
    return f'"{doc["job_id"]}.{doc.get("version", 0)}"'


def _matches(if_none_match: str | None, etag: str) -> bool:
    if not if_none_match:
        return False
    candidates = {tag.strip().removeprefix("W/") for tag in if_none_match.split(",")}
    return "*" in candidates or etag in candidates


async def load_owned_job(
    services: Services, raw_job_id: str, principal: Principal, projection: dict[str, int]
) -> dict[str, Any]:
    """One indexed read; 404 for a malformed or unknown id, 403 for another user's job."""
    job_id = canonical_job_id(raw_job_id)
    if job_id is None:
        raise JobNotFound(raw_job_id)
    collection = PdfChapterJob.get_pymongo_collection()
    doc: dict[str, Any] | None = await collection.find_one({"job_id": job_id}, projection)
    if doc is None:
        raise JobNotFound(job_id)
    if doc["user_id"] != principal.user_id:
        raise AccessDenied
    return doc


class BookJobController(Controller):
    """Jobs that turn an uploaded PDF into a book chapter (seed 002)."""

    path = "/api/v1/books/jobs"
    tags = ["book jobs"]  # noqa: RUF012 - Litestar reads a plain class attribute
    security = [{"BearerToken": []}]  # noqa: RUF012

    @get(
        "/{job_id:str}",
        summary="Poll a PDF chapter job",
        description=(
            "Status and progress of one job (seed 002). Send the previous ETag in If-None-Match "
            "to get a 304 while nothing changed; wait Retry-After seconds between polls."
        ),
        opt={"error_prefix": "Failed to get job status"},
        responses={
            304: ResponseSpec(None, description="Unchanged since the ETag sent"),
            **ERROR_RESPONSES,
        },
    )
    async def get_job(
        self,
        request: Request[Any, Any, Any],
        job_id: FromPath[str],
        principal: PrincipalDep,
        services: ServicesDep,
    ) -> Response[JobStatusOut]:
        doc = await load_owned_job(services, job_id, principal, JOB_STATUS_FIELDS)
        etag = etag_of(doc)
        headers = {"ETag": etag, "Cache-Control": "no-cache"}
        if not JobStatus(doc["status"]).is_terminal:
            headers["Retry-After"] = str(services.settings.poll_retry_after_s)
        if _matches(request.headers.get("if-none-match"), etag):
            not_modified = Response(b"", status_code=HTTP_304_NOT_MODIFIED, headers=headers)
            return cast(Response[JobStatusOut], not_modified)
        # Encoded here: bytes skip Litestar's per-response serializer lookup on the hot path.
        body = Response(ENCODE(job_status_out(doc)), media_type=MediaType.JSON, headers=headers)
        return cast(Response[JobStatusOut], body)
