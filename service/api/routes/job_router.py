"""The generic job-router contract under ``/api/v1/jobs`` (create, list, get, delete; another
user's job is a 404), answering with the job-detail contract's camelCase job and its stages.
Both are views of the same ``pdf_chapter_jobs`` documents the book-jobs contract serves."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, Response, delete, get, post
from litestar.params import FromPath, FromQuery, QueryParameter

from service.api.http.body import JSON_BODY_ERRORS, idempotency_key, json_body, validated
from service.api.http.dependencies import PrincipalDep, ServicesDep
from service.api.schemas.common import CALLER_ERRORS, OWNER_HIDDEN_ERRORS, error
from service.api.schemas.job_detail import (
    JOB_DETAIL_FIELDS,
    JobCreateIn,
    JobDetailOut,
    job_detail_out,
)
from service.domain.errors import JobNotFound
from service.domain.job import JobStatus
from service.jobs.access import Others, caller_job
from service.jobs.control import delete_job
from service.jobs.create import create_job
from service.jobs.listing import jobs_from, jobs_of_file

RESPONSES = OWNER_HIDDEN_ERRORS
NOT_FOUND = {404: error("No such job of the caller's")}
BAD_QUERY = {400: error("Invalid query parameter")}


class JobRouterController(Controller):
    """Jobs as a generic job system, with stage detail."""

    path = "/api/v1/jobs"
    tags = ["jobs"]  # noqa: RUF012 - Litestar reads a plain class attribute
    security = [{"BearerToken": []}]  # noqa: RUF012

    @post(
        "/",
        summary="Create and enqueue a PDF chapter job",
        description=(
            "`{title, payload}`; the payload names an uploaded file (`file_id`, from "
            "`POST /api/v1/files`) and the book its chapter joins (`book_id`). Answers 201 with "
            "the job with its stages. Send an Idempotency-Key header to make retries safe."
        ),
        status_code=201,
        opt={"error_prefix": "Failed to create job"},
        responses={
            **RESPONSES,
            **JSON_BODY_ERRORS,
            404: error("No such file of the caller's"),
            422: error("Invalid fields, each named"),
            429: error("Past JOB_CREATIONS_PER_MINUTE or MAX_ACTIVE_JOBS_PER_USER; Retry-After"),
        },
    )
    async def create(
        self, request: Request[Any, Any, Any], principal: PrincipalDep, services: ServicesDep
    ) -> Response[JobDetailOut]:
        key = idempotency_key(request)
        body = validated(JobCreateIn, await json_body(request))
        job_request = body.payload.job_request(title=body.title)
        doc = await create_job(
            services, principal.user_id, request=job_request, idempotency_key=key
        )
        return Response(
            job_detail_out(doc),
            status_code=201,
            headers={"Location": f"{self.path}/{doc['job_id']}"},
        )

    @get(
        "/",
        summary="List my jobs, newest first",
        description=(
            "The generic job-router contract's list, in the job-detail contract's shape: the "
            "caller's jobs, newest first, `limit` 1-100 (default 50) and `offset`; a limit out "
            "of range is a 400."
        ),
        opt={"error_prefix": "Failed to list jobs"},
        responses={**BAD_QUERY, **CALLER_ERRORS},
    )
    async def list_jobs(
        self,
        principal: PrincipalDep,
        services: ServicesDep,
        status: FromQuery[JobStatus | None] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=100)] = 50,
        offset: Annotated[int, QueryParameter(ge=0, le=100_000)] = 0,
    ) -> list[JobDetailOut]:
        docs = await jobs_from(
            services,
            principal.user_id,
            JOB_DETAIL_FIELDS,
            status=status,
            offset=offset,
            limit=limit,
        )
        return [job_detail_out(doc) for doc in docs]

    @get(
        "/document/{document_id:str}",
        summary="List the jobs of one uploaded file, newest first",
        description="404 when the file does not exist or is not the caller's.",
        opt={"error_prefix": "Failed to list jobs"},
        responses={
            **BAD_QUERY,
            404: error("No such file of the caller's"),
            **CALLER_ERRORS,
        },
    )
    async def list_document_jobs(
        self,
        document_id: FromPath[str],
        principal: PrincipalDep,
        services: ServicesDep,
        limit: Annotated[int, QueryParameter(ge=1, le=100)] = 10,
    ) -> list[JobDetailOut]:
        docs = await jobs_of_file(
            services, principal.user_id, document_id, JOB_DETAIL_FIELDS, limit=limit
        )
        return [job_detail_out(doc) for doc in docs]

    @get(
        "/{job_id:str}",
        summary="A job with its stages",
        description="The job with its stages. Another user's job is a 404, as an unknown one.",
        opt={"error_prefix": "Failed to get job status"},
        responses={**RESPONSES, **NOT_FOUND},
    )
    async def get_job(
        self, job_id: FromPath[str], principal: PrincipalDep, services: ServicesDep
    ) -> JobDetailOut:
        # Polled: coalesced with the other polls in flight (service/store/reader.py).
        doc = await caller_job(
            job_id,
            principal.user_id,
            reader=services.readers.detail,
            others=Others.hide,
            missing=lambda _: JobNotFound(job_id),
        )
        return job_detail_out(doc)

    @delete(
        "/{job_id:str}",
        summary="Delete a job (cancels it first if it is still running)",
        description=(
            "The generic job-router contract's delete: the job's record only (its chapter and "
            "the uploaded PDF stay). Another user's job is a 404. 204."
        ),
        status_code=204,
        opt={"error_prefix": "Failed to delete job"},
        responses={**RESPONSES, **NOT_FOUND},
    )
    async def remove(
        self, job_id: FromPath[str], principal: PrincipalDep, services: ServicesDep
    ) -> None:
        doc = await caller_job(
            job_id,
            principal.user_id,
            jobs=services.store.jobs,
            others=Others.hide,
            missing=lambda _: JobNotFound(job_id),
        )
        await delete_job(services, doc["job_id"], principal.user_id)
