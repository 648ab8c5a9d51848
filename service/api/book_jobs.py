"""Seed 002: PDF chapter jobs under ``/api/v1/books/jobs``; polling is the hot path."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, Response, delete, get, post
from litestar.openapi import ResponseSpec
from litestar.params import FromPath, FromQuery, QueryParameter
from litestar.response.base import ASGIResponse
from litestar.status_codes import HTTP_304_NOT_MODIFIED

from service.api.auth import Principal
from service.api.body import JSON_BODY_ERRORS, PrintableId, idempotency_key, json_body, validated
from service.api.chapters import MAX_OFFSET, ChapterOptionsIn
from service.api.dependencies import PrincipalDep, ServicesDep, services_of
from service.api.files import UPLOAD_ERRORS, receive_pdf
from service.api.multipart import is_multipart
from service.api.page_images import ChapterPageOut, ImageUrls
from service.api.quota import admit_job_creation, ensure_job_slot
from service.api.responses import (
    CALLER_ERRORS,
    ERROR_RESPONSES,
    Timestamp,
    error,
    etag_matches,
    iso_z,
    iso_z_or_none,
)
from service.domain.cursor import decode_cursor, encode_cursor
from service.domain.errors import (
    AccessDenied,
    InvalidRequest,
    JobNotFound,
    TooManyActiveJobs,
)
from service.domain.job import JobStatus
from service.store.chapters import count_pages, stored_pages
from service.store.documents import JobDoc
from service.store.files import StoredFile, delete_file
from service.store.job_store import (
    cancel_job,
    canonical_job_id,
    create_job,
    delete_job,
    get_job,
    list_jobs,
)


class JobResultOut(msgspec.Struct, kw_only=True):
    """What a completed job produced."""

    chapter_id: str
    total_pages: int


class JobStatusOut(msgspec.Struct, kw_only=True, omit_defaults=True):
    """Seed 002: ``GET /api/v1/books/jobs/{job_id}``."""

    job_id: str
    user_id: str
    status: JobStatus
    progress: Annotated[int, msgspec.Meta(ge=0, le=100)]
    message: str
    result: JobResultOut | None = None
    error: str | None = None
    created_at: Timestamp
    updated_at: Timestamp
    completed_at: Timestamp | None = None
    failed_at: Timestamp | None = None
    cancelled_at: Timestamp | None = None


JOB_STATUS_FIELDS: dict[str, int] = {
    "_id": 0,
    "job_id": 1,
    "user_id": 1,
    "status": 1,
    "progress": 1,
    "message": 1,
    "result": 1,
    "error": 1,
    "created_at": 1,
    "updated_at": 1,
    "completed_at": 1,
    "failed_at": 1,
    "cancelled_at": 1,
    "version": 1,
}


def job_status_out(doc: JobDoc) -> JobStatusOut:
    """Map a raw ``pdf_chapter_jobs`` document to seed 002's shape.

    Terminal fields appear only with their status, so a document mid-retry never shows a stale
    result or error.
    """
    status = JobStatus(doc["status"])
    result = doc.get("result") if status is JobStatus.completed else None
    return JobStatusOut(
        job_id=doc["job_id"],
        user_id=doc["user_id"],
        status=status,
        progress=int(doc.get("progress", 0)),
        message=doc.get("message", ""),
        result=JobResultOut(chapter_id=result["chapter_id"], total_pages=result["total_pages"])
        if result
        else None,
        error=doc.get("error") if status is JobStatus.failed else None,
        created_at=iso_z(doc["created_at"]),
        updated_at=iso_z(doc["updated_at"]),
        completed_at=iso_z_or_none(doc.get("completed_at"))
        if status is JobStatus.completed
        else None,
        failed_at=iso_z_or_none(doc.get("failed_at")) if status is JobStatus.failed else None,
        cancelled_at=iso_z_or_none(doc.get("cancelled_at"))
        if status is JobStatus.cancelled
        else None,
    )


class CreateJobIn(ChapterOptionsIn, kw_only=True, forbid_unknown_fields=True):
    """``POST /api/v1/books/jobs`` as JSON (or form fields): which uploaded file becomes a chapter
    of which book, and the chapter's optional title, slug, place and content mode."""

    book_id: PrintableId
    file_id: Annotated[str, msgspec.Meta(min_length=1, max_length=128)]


class JobPagesOut(msgspec.Struct, kw_only=True):
    """The pages of a job stored so far, in order: a frontend shows them while the job runs.
    ``total_pages`` is null until the PDF was opened."""

    items: list[ChapterPageOut]
    rendered: int
    total_pages: int | None
    offset: int
    limit: int


class JobListOut(msgspec.Struct, kw_only=True):
    """The caller's jobs, newest first; pass ``next_cursor`` back as ``cursor`` for more."""

    items: list[JobStatusOut]
    next_cursor: str | None


ENCODE = msgspec.json.Encoder().encode


def _cursor_of(doc: JobDoc) -> str:
    return encode_cursor(doc["created_at"], doc["job_id"])


def _after_cursor(cursor: str) -> dict[str, Any]:
    """The query part that continues after ``cursor`` in (created_at, job_id) descending order."""
    position = decode_cursor(cursor)  # 400 for anything we did not make
    created_at, job_id = position.created_at, position.job_id
    return {
        "$or": [
            {"created_at": {"$lt": created_at}},
            {"created_at": created_at, "job_id": {"$lt": job_id}},
        ]
    }


def etag_of(doc: JobDoc) -> str:
    """A strong validator: every write to a job bumps its ``version``."""
    return f'"{doc["job_id"]}.{doc.get("version", 0)}"'


def owned_job(doc: JobDoc | None, job_id: str, principal: Principal) -> JobDoc:
    """The caller's job: 404 when there is none, 403 when it is another user's."""
    if doc is None:
        raise JobNotFound(job_id)
    if doc["user_id"] != principal.user_id:
        raise AccessDenied
    return doc


def job_id_or_404(raw_job_id: str) -> str:
    job_id = canonical_job_id(raw_job_id)
    if job_id is None:
        raise JobNotFound(raw_job_id)
    return job_id


async def load_owned_job(
    raw_job_id: str, principal: Principal, projection: dict[str, int]
) -> JobDoc:
    """One indexed read; 404 for a malformed or unknown id, 403 for another user's job."""
    job_id = job_id_or_404(raw_job_id)
    return owned_job(await get_job(job_id, projection), job_id, principal)


class BookJobController(Controller):
    """Jobs that turn an uploaded PDF into a book chapter (seed 002)."""

    path = "/api/v1/books/jobs"
    tags = ["book jobs"]  # noqa: RUF012 - Litestar reads a plain class attribute
    security = [{"BearerToken": []}]  # noqa: RUF012

    @post(
        "/",
        summary="Create a PDF chapter job",
        description=(
            "JSON `{book_id, file_id}` for an uploaded file, or multipart/form-data with `book_id` "
            "and `file` to upload and create in one request. Answers 202 with the job and its "
            "Location. Send an Idempotency-Key header to make retries safe."
        ),
        status_code=202,
        request_max_body_size=None,  # multipart uploads are limited while streaming
        opt={"error_prefix": "Failed to create job"},
        responses={
            **JSON_BODY_ERRORS,
            **UPLOAD_ERRORS,
            400: error("Malformed body or upload"),
            404: error("No such file of the caller's"),
            413: error("Upload larger than MAX_UPLOAD_MB, or past STORAGE_QUOTA_MB"),
            415: error("Upload is not a PDF"),
            422: error("Invalid fields, or a reused Idempotency-Key"),
            429: error("Past JOB_CREATIONS_PER_MINUTE or MAX_ACTIVE_JOBS_PER_USER; Retry-After"),
            **CALLER_ERRORS,
        },
    )
    async def create(
        self, request: Request[Any, Any, Any], principal: PrincipalDep, services: ServicesDep
    ) -> Response[JobStatusOut]:
        key = idempotency_key(request)
        stored: StoredFile | None = None
        if is_multipart(request):
            # Limits first: an upload that could only become a refused job is never stored.
            await admit_job_creation(services, principal.user_id)
            await ensure_job_slot(services, principal.user_id)
            fields, stored = await receive_pdf(request, services, principal.user_id)
            try:
                body = validated(CreateJobIn, {**fields, "file_id": stored.file_id}, strict=False)
            except InvalidRequest:
                # The form's fields may follow its file: a rejected form keeps no upload.
                await delete_file(services.mongo.db, stored.file_id)
                raise
        else:
            body = validated(CreateJobIn, await json_body(request))
            await admit_job_creation(services, principal.user_id)
        try:
            doc = await create_job(
                services.queue,
                services.mongo.db,
                user_id=principal.user_id,
                book_id=body.book_id,
                file_id=body.file_id,
                options=body.options(),
                idempotency_key=key,
                max_active=services.settings.max_active_jobs_per_user,
            )
        except TooManyActiveJobs:
            if stored is not None:  # another request took the last slot while this one uploaded
                await delete_file(services.mongo.db, stored.file_id)
            raise
        location = f"{self.path}/{doc['job_id']}"
        return Response(job_status_out(doc), status_code=202, headers={"Location": location})

    @get(
        "/",
        summary="List my jobs, newest first",
        opt={"error_prefix": "Failed to list jobs"},
        responses={
            400: error("Invalid status, limit or cursor"),
            **CALLER_ERRORS,
        },
    )
    async def list_jobs(
        self,
        principal: PrincipalDep,
        status: FromQuery[JobStatus | None] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=100)] = 20,
        cursor: FromQuery[str | None] = None,
    ) -> JobListOut:
        after = _after_cursor(cursor) if cursor else None
        docs = await list_jobs(
            principal.user_id, JOB_STATUS_FIELDS, status=status, after=after, limit=limit + 1
        )
        page = docs[:limit]
        next_cursor = _cursor_of(page[-1]) if len(docs) > limit else None
        return JobListOut(items=[job_status_out(doc) for doc in page], next_cursor=next_cursor)

    @post(
        "/{job_id:str}/cancel",
        summary="Cancel a job",
        status_code=200,
        opt={"error_prefix": "Failed to cancel job"},
        responses={
            409: error("Already finished"),
            **ERROR_RESPONSES,
        },
    )
    async def cancel(
        self, job_id: FromPath[str], principal: PrincipalDep, services: ServicesDep
    ) -> JobStatusOut:
        doc = await load_owned_job(job_id, principal, {"job_id": 1, "user_id": 1})
        cancelled = await cancel_job(
            doc["job_id"], principal.user_id, JOB_STATUS_FIELDS, services.page_store
        )
        return job_status_out(cancelled)

    @delete(
        "/{job_id:str}",
        summary="Delete a job (cancels it first if needed)",
        status_code=204,
        opt={"error_prefix": "Failed to delete job"},
        responses=ERROR_RESPONSES,
    )
    async def remove(
        self, job_id: FromPath[str], principal: PrincipalDep, services: ServicesDep
    ) -> None:
        doc = await load_owned_job(job_id, principal, {"job_id": 1, "user_id": 1})
        await delete_job(doc["job_id"], principal.user_id, services.page_store)

    @get(
        "/{job_id:str}/pages",
        summary="The pages rendered so far, with their image URLs",
        description=(
            "Owner-only, paginated. A page is listed once its text and images are stored, so "
            "its URLs open at once; `rendered` counts them. Works while the job runs and after."
        ),
        opt={"error_prefix": "Failed to list pages"},
        responses=ERROR_RESPONSES,
    )
    async def list_pages(
        self,
        request: Request[Any, Any, Any],
        job_id: FromPath[str],
        principal: PrincipalDep,
        services: ServicesDep,
        offset: Annotated[int, QueryParameter(ge=0, le=MAX_OFFSET)] = 0,
        limit: Annotated[int, QueryParameter(ge=1, le=100)] = 20,
    ) -> JobPagesOut:
        doc = await load_owned_job(job_id, principal, {"job_id": 1, "user_id": 1, "pages_total": 1})
        pages, rendered = await asyncio.gather(
            stored_pages(doc["job_id"], offset=offset, limit=limit),
            count_pages(doc["job_id"]),
        )
        urls = ImageUrls(request, services)
        return JobPagesOut(
            items=[await urls.page(entry) for entry in pages],
            rendered=rendered,
            total_pages=doc.get("pages_total"),
            offset=offset,
            limit=limit,
        )

    @get(
        "/{job_id:str}",
        summary="Poll a PDF chapter job",
        description=(
            "Status and progress of one job (seed 002). Send the previous ETag in If-None-Match "
            "to get a 304 while nothing changed; wait Retry-After seconds between polls."
        ),
        opt={"error_prefix": "Failed to get job status"},
        responses={
            # The handler answers with a ready ASGIResponse, so its 200 is documented here.
            200: ResponseSpec(JobStatusOut, generate_examples=False, description="The job"),
            304: ResponseSpec(
                None, generate_examples=False, description="Unchanged since the ETag sent"
            ),
            **ERROR_RESPONSES,
        },
    )
    async def get_job(
        self, request: Request[Any, Any, Any], job_id: FromPath[str], principal: PrincipalDep
    ) -> ASGIResponse:
        services = services_of(request)
        canonical = job_id_or_404(job_id)
        # Coalesced with the other polls in flight (service/reads.py), never staler than a read.
        doc = owned_job(await services.readers.status.read(canonical), canonical, principal)
        etag = etag_of(doc)
        headers = {"etag": etag, "cache-control": "no-cache"}
        if not JobStatus(doc["status"]).is_terminal:
            headers["retry-after"] = str(services.settings.poll_retry_after_s)
        if etag_matches(request.headers.get("if-none-match"), etag):
            return ASGIResponse(status_code=HTTP_304_NOT_MODIFIED, headers=headers)
        # The hot path: encoded here and answered as a low-level ASGIResponse, which skips
        # Litestar's Response object, its serializer lookup and its conversion to ASGI.
        return ASGIResponse(body=ENCODE(job_status_out(doc)), headers=headers)
