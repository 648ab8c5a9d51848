"""Public representations of a job: one schema plus one mapping function per contract.

Schemas are msgspec structs: they encode fast on the polling path and Litestar documents them
in OpenAPI. Optional fields are omitted when unset, exactly as the seed's examples show
(``result``/``completed_at`` only when completed, ``error``/``failed_at`` only when failed).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

import msgspec

from service.models import JobStatus

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
    moment = moment.astimezone(UTC)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{moment.microsecond // 1000:03d}Z"


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


class ErrorOut(msgspec.Struct):
    """Every error this service answers with: ``{"detail": "..."}``."""

    detail: str


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
