"""The book-jobs contract: PDF chapter jobs under ``/api/v1/books/jobs`` (create, list, poll,
cancel, delete, pages). Polling is the hot path."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, Response, delete, get, post
from litestar.openapi import ResponseSpec
from litestar.params import FromPath, FromQuery, QueryParameter
from litestar.response.base import ASGIResponse
from litestar.status_codes import HTTP_304_NOT_MODIFIED

from service.api.http.body import JSON_BODY_ERRORS, idempotency_key, json_body, validated
from service.api.http.dependencies import PrincipalDep, ServicesDep, services_of
from service.api.http.etag import etag_matches
from service.api.http.image_urls import ImageUrls
from service.api.http.multipart import MultipartForm, is_multipart
from service.api.schemas.chapters import MAX_OFFSET
from service.api.schemas.common import CALLER_ERRORS, ERROR_RESPONSES, error
from service.api.schemas.files import UPLOAD_ERRORS
from service.api.schemas.jobs import (
    ENCODE,
    JOB_STATUS_FIELDS,
    CreateJobIn,
    JobListOut,
    JobPagesOut,
    JobStatusOut,
    etag_of,
    job_status_out,
)
from service.domain.job import JobStatus
from service.jobs.access import Others, caller_job
from service.jobs.chapters import job_pages
from service.jobs.control import cancel_job, delete_job
from service.jobs.create import JobRequest, create_job
from service.jobs.listing import jobs_page

OWN_JOB = {"job_id": 1, "user_id": 1}


def _form_request(fields: dict[str, str], file_id: str) -> JobRequest:
    """A create form's fields (strings: ``"3"``, ``"true"``), with the file it carried."""
    return validated(CreateJobIn, {**fields, "file_id": file_id}, strict=False).job_request()


class BookJobController(Controller):
    """Jobs that turn an uploaded PDF into a book chapter (the book-jobs contract)."""

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
        if is_multipart(request):
            doc = await create_job(
                services,
                principal.user_id,
                form=MultipartForm(request),
                parse_form=_form_request,
                idempotency_key=key,
            )
        else:
            body = validated(CreateJobIn, await json_body(request))
            doc = await create_job(
                services, principal.user_id, request=body.job_request(), idempotency_key=key
            )
        location = f"{self.path}/{doc['job_id']}"
        return Response(job_status_out(doc), status_code=202, headers={"Location": location})

    @get(
        "/",
        summary="List my jobs, newest first",
        description=(
            "The caller's jobs, newest first, each as the poll shows it (with its `book_id` and "
            "`filename`, and `chapter_deleted_at` once its chapter was deleted). `status` filters; "
            "`limit` is 1-100; pass `next_cursor` back as `cursor` for the next page."
        ),
        opt={"error_prefix": "Failed to list jobs"},
        responses={
            400: error("Invalid status, limit or cursor"),
            **CALLER_ERRORS,
        },
    )
    async def list_jobs(
        self,
        principal: PrincipalDep,
        services: ServicesDep,
        status: FromQuery[JobStatus | None] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=100)] = 20,
        cursor: FromQuery[str | None] = None,
    ) -> JobListOut:
        page, next_cursor = await jobs_page(
            services,
            principal.user_id,
            JOB_STATUS_FIELDS,
            status=status,
            cursor=cursor,
            limit=limit,
        )
        return JobListOut(items=[job_status_out(doc) for doc in page], next_cursor=next_cursor)

    @post(
        "/{job_id:str}/cancel",
        summary="Cancel a job",
        description=(
            "A pending or processing job becomes `cancelled` at once; what it wrote (pages, "
            "images) is removed then, or by the sweeper once the page store is back. A finished "
            "job is a 409. Answers the job as the poll shows it."
        ),
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
        user_id = principal.user_id
        doc = await caller_job(job_id, user_id, jobs=services.store.jobs, others=Others.forbid)
        cancelled = await cancel_job(services, doc["job_id"], user_id, JOB_STATUS_FIELDS)
        return job_status_out(cancelled)

    @delete(
        "/{job_id:str}",
        summary="Delete a job (cancels it first if needed)",
        description=(
            "Removes the job's record only: its chapter and the uploaded PDF stay. A job that "
            "ended without a chapter has its output removed first. 204."
        ),
        status_code=204,
        opt={"error_prefix": "Failed to delete job"},
        responses=ERROR_RESPONSES,
    )
    async def remove(
        self, job_id: FromPath[str], principal: PrincipalDep, services: ServicesDep
    ) -> None:
        user_id = principal.user_id
        doc = await caller_job(job_id, user_id, jobs=services.store.jobs, others=Others.forbid)
        await delete_job(services, doc["job_id"], user_id)

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
        doc, pages, rendered = await job_pages(
            services, job_id, principal.user_id, offset=offset, limit=limit
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
            "Status and progress of one job. Send the previous ETag in If-None-Match "
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
        # Coalesced with the other polls in flight (service/store/reader.py), never staler than
        # a read of its own.
        doc = await caller_job(
            job_id, principal.user_id, reader=services.readers.status, others=Others.forbid
        )
        etag = etag_of(doc)
        headers = {"etag": etag, "cache-control": "no-cache"}
        if not JobStatus(doc["status"]).is_terminal:
            headers["retry-after"] = str(services.settings.poll_retry_after_s)
        if etag_matches(request.headers.get("if-none-match"), etag):
            return ASGIResponse(status_code=HTTP_304_NOT_MODIFIED, headers=headers)
        # The hot path: encoded here and answered as a low-level ASGIResponse, which skips
        # Litestar's Response object, its serializer lookup and its conversion to ASGI.
        return ASGIResponse(body=ENCODE(job_status_out(doc)), headers=headers)
