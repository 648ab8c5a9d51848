"""Seeds 003 and 000: the generic job router under ``/api/v1/jobs``.

Seed 003 gives the verbs (create, list, get, delete; another user's job is a 404), seed 000 the
camelCase job detail with its stages. Both are views of the same ``pdf_chapter_jobs`` documents
that seed 002's endpoints serve.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from litestar import Controller, Request, Response, delete, get, post
from litestar.params import FromPath, FromQuery, QueryParameter

from service.api.body import JSON_BODY_ERRORS, PrintableId, idempotency_key, json_body, validated
from service.api.chapters import ChapterOptionsIn
from service.api.dependencies import PrincipalDep, ServicesDep
from service.api.quota import admit_job_creation
from service.api.responses import (
    CALLER_ERRORS,
    OWNER_HIDDEN_ERRORS,
    Timestamp,
    error,
    iso_z,
    iso_z_or_none,
)
from service.domain.errors import JobNotFound
from service.domain.job import JobStatus, finished_at
from service.domain.stages import Stage, StageStatus, stages_of
from service.store.documents import JobDoc
from service.store.files import find_owned_file
from service.store.job_store import (
    create_job,
    delete_job,
    find_owned_job,
    list_jobs,
    read_owned_job,
)

JOB_TYPE: Literal["pdf_chapter"] = "pdf_chapter"


class StageOut(msgspec.Struct, kw_only=True, rename="camel"):
    """One step of the job: ``download_pdf``, ``extract_pages``, ``create_chapter``."""

    id: str
    stage_name: Stage
    status: StageStatus
    percent_complete: Annotated[int, msgspec.Meta(ge=0, le=100)]


class JobDetailOut(msgspec.Struct, kw_only=True, rename="camel"):
    """Seed 000: ``GET /api/v1/jobs/{job_id}``. ``documentId`` is the uploaded file's id."""

    id: str
    title: str | None
    document_id: str
    job_type: Literal["pdf_chapter"]
    status: JobStatus
    progress_percent: Annotated[int, msgspec.Meta(ge=0, le=100)]
    error_code: str | None
    error_message: str | None
    created_at: Timestamp
    started_at: Timestamp | None
    completed_at: Timestamp | None
    stages: list[StageOut]
    # MuPDF had to rebuild a damaged file to read it: some pages may be blank or partial.
    repaired: bool = False


# Fields the job detail reads.
JOB_DETAIL_FIELDS: dict[str, int] = {
    "_id": 0,
    **dict.fromkeys(
        [
            "job_id",
            "user_id",
            "title",
            "file_id",
            "status",
            "progress",
            "error",
            "error_code",
            "message",
            "created_at",
            "started_at",
            "completed_at",
            "failed_at",
            "cancelled_at",
            "stages",
            "version",
            "repaired",
        ],
        1,
    ),
}

# Seed 001's view adds what its progress, errors and stats are made of.


def error_message_of(doc: JobDoc) -> str | None:
    status = JobStatus(doc["status"])
    if status is JobStatus.failed:
        return doc.get("error") or "PDF processing failed"
    if status is JobStatus.cancelled:
        return "Job cancelled"
    return None


ERROR_STATUSES = frozenset({JobStatus.failed, JobStatus.cancelled})


def job_detail_out(doc: JobDoc) -> JobDetailOut:
    """Map a ``pdf_chapter_jobs`` document to seed 000's shape."""
    status = JobStatus(doc["status"])
    return JobDetailOut(
        id=doc["job_id"],
        title=doc.get("title"),
        document_id=doc["file_id"],
        job_type=JOB_TYPE,
        status=status,
        progress_percent=int(doc.get("progress", 0)),
        error_code=doc.get("error_code") if status in ERROR_STATUSES else None,
        error_message=error_message_of(doc),
        created_at=iso_z(doc["created_at"]),
        started_at=iso_z_or_none(doc.get("started_at")),
        completed_at=iso_z_or_none(finished_at(doc)),
        stages=[
            StageOut(
                id=f"stage_{number}",
                stage_name=stage,
                status=StageStatus(state.get("status", StageStatus.pending)),
                percent_complete=int(state.get("percent", 0)),
            )
            for number, (stage, state) in enumerate(stages_of(doc).items(), start=1)
        ],
        repaired=bool(doc.get("repaired")),
    )


class JobPayloadIn(ChapterOptionsIn, kw_only=True, forbid_unknown_fields=True):
    """What the worker needs: the uploaded file and the book its chapter joins, and the
    chapter's optional slug, place and content mode (its title is the job's ``title``)."""

    book_id: PrintableId
    file_id: Annotated[str, msgspec.Meta(min_length=1, max_length=128)]


class JobCreateIn(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Seed 003: ``POST /api/v1/jobs``."""

    title: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    payload: JobPayloadIn


RESPONSES = OWNER_HIDDEN_ERRORS
NOT_FOUND = {404: error("No such job of the caller's")}
BAD_QUERY = {400: error("Invalid query parameter")}


async def _owned_job(raw_job_id: str, user_id: str) -> JobDoc:
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
        await admit_job_creation(services, principal.user_id)
        doc = await create_job(
            services.queue,
            services.mongo.db,
            user_id=principal.user_id,
            book_id=body.payload.book_id,
            file_id=body.payload.file_id,
            options=body.payload.options(title=body.title),
            idempotency_key=key,
            max_active=services.settings.max_active_jobs_per_user,
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
        docs = await list_jobs(
            principal.user_id, JOB_DETAIL_FIELDS, status=status, offset=offset, limit=limit
        )
        return [job_detail_out(doc) for doc in docs]

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
        docs = await list_jobs(
            principal.user_id, JOB_DETAIL_FIELDS, file_id=document_id, limit=limit
        )
        return [job_detail_out(doc) for doc in docs]

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
        # Polled: coalesced with the other polls in flight (service/store/reader.py).
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
    async def remove(
        self, job_id: FromPath[str], principal: PrincipalDep, services: ServicesDep
    ) -> None:
        doc = await _owned_job(job_id, principal.user_id)
        await delete_job(doc["job_id"], principal.user_id, services.page_store)
