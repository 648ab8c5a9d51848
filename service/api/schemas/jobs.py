"""The book-jobs contract's shapes (``/api/v1/books/jobs``: its poll, list, create and pages),
and the mapping of a stored job onto them."""

from __future__ import annotations

from typing import Annotated

import msgspec

from service.api.schemas.chapters import ChapterOptionsIn, ChapterPageOut
from service.api.schemas.common import PrintableId, Timestamp, iso_z, iso_z_or_none
from service.domain.job import JobStatus
from service.jobs.create import JobRequest
from service.store.documents import JobDoc


class JobResultOut(msgspec.Struct, kw_only=True):
    """What a completed job produced."""

    chapter_id: str
    total_pages: int


class JobStatusOut(msgspec.Struct, kw_only=True, omit_defaults=True):
    """The book-jobs poll: ``GET /api/v1/books/jobs/{job_id}``, with three fields the contract
    does not have: ``book_id`` (the chapter's book), ``filename`` (the uploaded PDF's name;
    absent for jobs made before it was kept) and ``chapter_deleted_at`` (a completed job whose
    chapter its owner deleted)."""

    job_id: str
    user_id: str
    book_id: str
    filename: str | None = None
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
    chapter_deleted_at: Timestamp | None = None


JOB_STATUS_FIELDS: dict[str, int] = {
    "_id": 0,
    "job_id": 1,
    "user_id": 1,
    "book_id": 1,
    "filename": 1,
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
    "chapter_deleted_at": 1,
    "version": 1,
}


def job_status_out(doc: JobDoc) -> JobStatusOut:
    """Map a raw ``pdf_chapter_jobs`` document to the book-jobs contract's shape.

    Terminal fields appear only with their status, so a document mid-retry never shows a stale
    result or error.
    """
    status = JobStatus(doc["status"])
    result = doc.get("result") if status is JobStatus.completed else None
    return JobStatusOut(
        job_id=doc["job_id"],
        user_id=doc["user_id"],
        book_id=doc.get("book_id", ""),
        filename=doc.get("filename"),
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
        chapter_deleted_at=iso_z_or_none(doc.get("chapter_deleted_at"))
        if status is JobStatus.completed
        else None,
    )


class CreateJobIn(ChapterOptionsIn, kw_only=True, forbid_unknown_fields=True):
    """``POST /api/v1/books/jobs`` as JSON (or form fields): which uploaded file becomes a chapter
    of which book, and the chapter's optional title, slug, place and content mode."""

    book_id: PrintableId
    file_id: Annotated[str, msgspec.Meta(min_length=1, max_length=128)]

    def job_request(self, title: str | None = None) -> JobRequest:
        """The use case's request (the job router names the title outside the payload)."""
        return JobRequest(self.book_id, self.file_id, self.options(title=title))


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


def etag_of(doc: JobDoc) -> str:
    """A strong validator: every write to a job bumps its ``version``."""
    return f'"{doc["job_id"]}.{doc.get("version", 0)}"'
