"""Public representations of a job: one schema plus one mapping function per contract.

Schemas are msgspec structs: they encode fast on the polling path and Litestar documents them
in OpenAPI. Optional fields are omitted when unset, exactly as the seed's examples show
(``result``/``completed_at`` only when completed, ``error``/``failed_at`` only when failed).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import msgspec

from service.models import JobStatus
from service.stages import STAGES, Stage, StageStatus, stage_state

Timestamp = Annotated[
    str,
    msgspec.Meta(
        extra_json_schema={"format": "date-time", "examples": ["2026-02-08T00:10:28.325Z"]}
    ),
]


def iso_z(moment: datetime) -> str:
    """ISO-8601 in UTC with milliseconds and ``Z``: ``2026-02-08T00:10:28.325Z``."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    elif moment.utcoffset():
        moment = moment.astimezone(UTC)
    # isoformat is C; formatting with strftime codes cost 5% of the polling endpoint's CPU.
    return moment.replace(tzinfo=None).isoformat(timespec="milliseconds") + "Z"


def iso_z_or_none(moment: datetime | None) -> str | None:
    return None if moment is None else iso_z(moment)


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


class FieldErrorOut(msgspec.Struct, kw_only=True):
    """One bad input: where (``payload.file_id``, ``limit``) and what is wrong with it."""

    field: str
    message: str


class ErrorOut(msgspec.Struct, kw_only=True, omit_defaults=True):
    """Every error this service answers with: ``{"detail": "..."}``, plus ``errors`` naming
    each bad field of a rejected request (400, 422)."""

    detail: str
    errors: list[FieldErrorOut] | None = None
    request_id: str | None = None  # on a 500: quote it to find the logged error


# Fields the polling endpoint reads; the projection keeps the round trip small.
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


def job_status_out(doc: dict[str, Any]) -> JobStatusOut:
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


class FileOut(msgspec.Struct, kw_only=True):
    """``POST /api/v1/files``: the stored upload."""

    file_id: str
    filename: str
    size_bytes: int
    sha256: str
    content_type: str
    created_at: Timestamp


class CreateJobIn(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """``POST /api/v1/books/jobs`` as JSON: which uploaded file becomes a chapter of which book."""

    book_id: Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
    file_id: Annotated[str, msgspec.Meta(min_length=1, max_length=128)]


class JobListOut(msgspec.Struct, kw_only=True):
    """The caller's jobs, newest first; pass ``next_cursor`` back as ``cursor`` for more."""

    items: list[JobStatusOut]
    next_cursor: str | None


class ChapterOut(msgspec.Struct, kw_only=True):
    """A chapter made from a PDF."""

    chapter_id: str
    book_id: str
    job_id: str
    title: str
    total_pages: int
    source_file_id: str
    source_filename: str
    created_at: Timestamp


class PageOut(msgspec.Struct, kw_only=True):
    """One page of a chapter."""

    id: str
    chunk_index: int
    page_number: int
    content: str


class PageListOut(msgspec.Struct, kw_only=True):
    items: list[PageOut]
    total: int
    offset: int
    limit: int


# --- Seed 000 (and 003): the camelCase job detail with stages ---------------------------------

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
        ],
        1,
    ),
}

# Seed 001's view adds what its progress, errors and stats are made of.
INGESTION_FIELDS: dict[str, int] = {
    **JOB_DETAIL_FIELDS,
    **dict.fromkeys(["page_errors", "pages_total", "pages_processed", "attempts", "updated_at"], 1),
}


def stages_of(doc: dict[str, Any]) -> dict[Stage, dict[str, Any]]:
    """The job's stages in order; a job stored before stages existed shows them pending."""
    stored = doc.get("stages") or {}
    return {stage: stored.get(stage.value) or stage_state() for stage in STAGES}


def finished_at(doc: dict[str, Any]) -> datetime | None:
    """When a terminal job ended, whichever way it ended."""
    status = JobStatus(doc["status"])
    field = {
        JobStatus.completed: "completed_at",
        JobStatus.failed: "failed_at",
        JobStatus.cancelled: "cancelled_at",
    }.get(status)
    return doc.get(field) if field else None


def error_message_of(doc: dict[str, Any]) -> str | None:
    status = JobStatus(doc["status"])
    if status is JobStatus.failed:
        return doc.get("error") or "PDF processing failed"
    if status is JobStatus.cancelled:
        return "Job cancelled"
    return None


ERROR_STATUSES = frozenset({JobStatus.failed, JobStatus.cancelled})


def job_detail_out(doc: dict[str, Any]) -> JobDetailOut:
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
    )


class JobPayloadIn(CreateJobIn, kw_only=True, forbid_unknown_fields=True):
    """What the worker needs: the uploaded file and the book its chapter joins."""


class JobCreateIn(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Seed 003: ``POST /api/v1/jobs``."""

    title: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    payload: JobPayloadIn


# --- Seed 004: chunks in a success/data/error envelope -----------------------------------------

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


# --- Seed 001: ingestion-style status ---------------------------------------------------------

IngestionStatus = Literal["pending", "running", "completed", "failed", "cancelled"]


class PageErrorOut(msgspec.Struct, kw_only=True):
    page_number: int
    error: str


class IngestionProgressOut(msgspec.Struct, kw_only=True):
    pages_total: int
    pages_processed: int
    chunks_created: int
    errors: list[PageErrorOut]


class IngestionErrorOut(msgspec.Struct, kw_only=True):
    timestamp: Timestamp
    error: str
    stage: Stage


class IngestionStatusOut(msgspec.Struct, kw_only=True):
    """Seed 001: ``GET /api/v1/ingestion/job/{job_id}``."""

    job_id: str
    status: IngestionStatus
    progress: IngestionProgressOut
    created_at: Timestamp
    started_at: Timestamp | None
    completed_at: Timestamp | None
    errors: list[IngestionErrorOut]
    stats: dict[str, float | int]


def _seconds(start: datetime | None, end: datetime | None) -> float | None:
    if start is None or end is None:
        return None
    return round((end - start).total_seconds(), 3)


def ingestion_stats(doc: dict[str, Any]) -> dict[str, float | int]:
    """Attempts, each finished stage's duration, and the whole run's duration and pace."""
    stats: dict[str, float | int] = {"attempts": int(doc.get("attempts", 0))}
    for stage, state in stages_of(doc).items():
        seconds = _seconds(state.get("started_at"), state.get("finished_at"))
        if seconds is not None:
            stats[f"{stage.value}_seconds"] = seconds
    total = _seconds(doc.get("started_at"), finished_at(doc))
    if total is not None:
        stats["total_seconds"] = total
    extract = stats.get("extract_pages_seconds")
    if extract and doc.get("pages_processed"):
        stats["pages_per_second"] = round(doc["pages_processed"] / extract, 1)
    return stats


def ingestion_errors(doc: dict[str, Any]) -> list[IngestionErrorOut]:
    """Unreadable pages, then the failure that ended the job, if it failed."""
    fallback = doc.get("updated_at") or doc["created_at"]
    errors = [
        IngestionErrorOut(
            timestamp=iso_z(error.get("timestamp") or fallback),
            error=f"page {error['page_number']}: {error['error']}",
            stage=Stage.extract_pages,
        )
        for error in doc.get("page_errors") or []
    ]
    if JobStatus(doc["status"]) is JobStatus.failed:
        stages = stages_of(doc)
        failed = [s for s, state in stages.items() if state.get("status") == StageStatus.failed]
        errors.append(
            IngestionErrorOut(
                timestamp=iso_z(doc.get("failed_at") or fallback),
                error=doc.get("error") or "PDF processing failed",
                stage=failed[0] if failed else Stage.download_pdf,
            )
        )
    return errors


def ingestion_status_out(doc: dict[str, Any], chunks_created: int) -> IngestionStatusOut:
    """Map a ``pdf_chapter_jobs`` document to seed 001's shape."""
    status = JobStatus(doc["status"])
    return IngestionStatusOut(
        job_id=doc["job_id"],
        status="running" if status is JobStatus.processing else status.value,  # type: ignore[arg-type]
        progress=IngestionProgressOut(
            pages_total=int(doc.get("pages_total") or 0),
            pages_processed=int(doc.get("pages_processed") or 0),
            chunks_created=chunks_created,
            errors=[
                PageErrorOut(page_number=error["page_number"], error=error["error"])
                for error in doc.get("page_errors") or []
            ],
        ),
        created_at=iso_z(doc["created_at"]),
        started_at=iso_z_or_none(doc.get("started_at")),
        completed_at=iso_z_or_none(finished_at(doc)),
        errors=ingestion_errors(doc),
        stats=ingestion_stats(doc),
    )
