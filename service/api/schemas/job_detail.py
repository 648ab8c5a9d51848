"""The generic job-router contract (create, list, get, delete under ``/api/v1/jobs``) and the
job-detail contract with its stages: their shapes, and the mapping of a stored job onto them."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from service.api.schemas.common import Timestamp, iso_z, iso_z_or_none
from service.api.schemas.jobs import CreateJobIn
from service.domain.job import JobStatus, finished_at
from service.domain.stages import Stage, StageStatus, stages_of
from service.store.documents import JobDoc

JOB_TYPE: Literal["pdf_chapter"] = "pdf_chapter"


class StageOut(msgspec.Struct, kw_only=True, rename="camel"):
    """One step of the job: ``download_pdf``, ``extract_pages``, ``create_chapter``."""

    id: str
    stage_name: Stage
    status: StageStatus
    percent_complete: Annotated[int, msgspec.Meta(ge=0, le=100)]


class JobDetailOut(msgspec.Struct, kw_only=True, rename="camel"):
    """The job detail: ``GET /api/v1/jobs/{job_id}``. ``documentId`` is the uploaded file's id."""

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


def error_message_of(doc: JobDoc) -> str | None:
    status = JobStatus(doc["status"])
    if status is JobStatus.failed:
        return doc.get("error") or "PDF processing failed"
    if status is JobStatus.cancelled:
        return "Job cancelled"
    return None


ERROR_STATUSES = frozenset({JobStatus.failed, JobStatus.cancelled})


def job_detail_out(doc: JobDoc) -> JobDetailOut:
    """Map a ``pdf_chapter_jobs`` document to the job-detail contract's shape."""
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


class JobPayloadIn(CreateJobIn, kw_only=True, forbid_unknown_fields=True):
    """What the worker needs: the uploaded file and the book its chapter joins, and the
    chapter's optional slug, place and content mode (its title is the job's ``title``). The
    same fields as the book-jobs create request, under the job router's name."""


class JobCreateIn(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The job router's create request: ``POST /api/v1/jobs``."""

    title: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    payload: JobPayloadIn
