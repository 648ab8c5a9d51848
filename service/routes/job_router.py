"""Seeds 003 and 000: the generic job router under ``/api/v1/jobs``.

Seed 003 gives the verbs (create, list, get, delete; another user's job is a 404), seed 000 the
camelCase job detail with its stages. Both are views of the same ``pdf_chapter_jobs`` documents
that seed 002's endpoints serve.
"""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, Response, delete, get, post
from litestar.params import FromPath, FromQuery, QueryParameter

from service.dependencies import PrincipalDep, ServicesDep
from service.errors import JobNotFound
from service.files import find_owned_file
from service.jobs import NEWEST_FIRST, create_job, delete_job, find_owned_job, read_owned_job
from service.models import JobStatus, PdfChapterJob
from service.routes.body import idempotency_key, json_body, validated
from service.routes.responses import CALLER_ERRORS, OWNER_HIDDEN_ERRORS, error
from service.schemas import JOB_DETAIL_FIELDS, JobCreateIn, JobDetailOut, job_detail_out

RESPONSES = OWNER_HIDDEN_ERRORS
NOT_FOUND = {404: error("No such job of the caller's")}
BAD_QUERY = {400: error("Invalid query parameter")}


async def _owned_job(raw_job_id: str, user_id: str) -> dict[str, Any]:
    """Seed 003: another user's job does not exist, as far as the caller can tell."""
    doc = await find_owned_job(raw_job_id, user_id, JOB_DETAIL_FIELDS)
    if doc is None:
        raise JobNotFound(raw_job_id)
    return doc


class JobRouterController(Controller):
    """Jobs as a generic job system (seed 003) with stage detail (seed 000)."""

    path = "/api/v1/jobs"
    tags = ["jobs"]  # noqa: RUF012 - Litestar reads a plain class attribute
    security = [{"BearerToken": []}]  # noqa: RUF012

    @post(
        "/",
        summary="Create and enqueue a PDF chapter job",
        description=(
            "Seed 003's `{title, payload}`; the payload names an uploaded file (`file_id`, from "
            "`POST /api/v1/files`) and the book its chapter joins (`book_id`). Answers 201 with "
            "the job in seed 000's shape. Send an Idempotency-Key header to make retries safe."
        ),
        status_code=201,
        opt={"error_prefix": "Failed to create job"},
        responses={
            **RESPONSES,
            404: error("No such file of the caller's"),
            422: error("Invalid fields, each named"),
        },
    )
    async def create(
        self, request: Request[Any, Any, Any], principal: PrincipalDep, services: ServicesDep
    ) -> Response[JobDetailOut]:
        key = idempotency_key(request)
        body = validated(JobCreateIn, await json_body(request))
        doc, _ = await create_job(
            services,
            user_id=principal.user_id,
            book_id=body.payload.book_id,
            file_id=body.payload.file_id,
            title=body.title,
            idempotency_key=key,
        )
        return Response(
            job_detail_out(doc),
            status_code=201,
            headers={"Location": f"{self.path}/{doc['job_id']}"},
        )

    @get(
        "/",
        summary="List my jobs, newest first",
        opt={"error_prefix": "Failed to list jobs"},
        responses={**BAD_QUERY, **CALLER_ERRORS},
    )
    async def list_jobs(
        self,
        principal: PrincipalDep,
        status: FromQuery[JobStatus | None] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=100)] = 50,
        offset: Annotated[int, QueryParameter(ge=0, le=100_000)] = 0,
    ) -> list[JobDetailOut]:
        query: dict[str, Any] = {"user_id": principal.user_id}
        if status is not None:
            query["status"] = status.value
        found = PdfChapterJob.get_pymongo_collection().find(query, JOB_DETAIL_FIELDS)
        found = found.sort(NEWEST_FIRST).skip(offset).limit(limit)
        return [job_detail_out(doc) async for doc in found]

    @get(
        "/document/{document_id:str}",
        summary="List the jobs of one uploaded file, newest first",
        description="Seed 000. 404 when the file does not exist or is not the caller's.",
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
        await find_owned_file(services.mongo.db, document_id, principal.user_id)
        found = PdfChapterJob.get_pymongo_collection().find(
            {"user_id": principal.user_id, "file_id": document_id}, JOB_DETAIL_FIELDS
        )
        found = found.sort(NEWEST_FIRST).limit(limit)
        return [job_detail_out(doc) async for doc in found]

    @get(
        "/{job_id:str}",
        summary="A job with its stages",
        description="Seed 000's shape. Another user's job is a 404 (seed 003).",
        opt={"error_prefix": "Failed to get job status"},
        responses={**RESPONSES, **NOT_FOUND},
    )
    async def get_job(
        self, job_id: FromPath[str], principal: PrincipalDep, services: ServicesDep
    ) -> JobDetailOut:
        # Polled: coalesced with the other polls in flight (service/reads.py).
        doc = await read_owned_job(services.readers.detail, job_id, principal.user_id)
        if doc is None:
            raise JobNotFound(job_id)
        return job_detail_out(doc)

    @delete(
        "/{job_id:str}",
        summary="Delete a job (cancels it first if it is still running)",
        status_code=204,
        opt={"error_prefix": "Failed to delete job"},
        responses={**RESPONSES, **NOT_FOUND},
    )
    async def remove(self, job_id: FromPath[str], principal: PrincipalDep) -> None:
        doc = await _owned_job(job_id, principal.user_id)
        await delete_job(doc["job_id"], principal.user_id)
