"""The job document: one model in MongoDB, collection ``pdf_chapter_jobs``.

Every public contract (seed documents 000-004) is a representation of this one model; see
``service/schemas.py``. Writes to a job's state go through atomic, guarded partial updates
(``doc.save()`` would replace the whole document and race with the worker).
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from uuid import uuid4

import pymongo
from beanie import Document
from pydantic import BaseModel, Field

ENQUEUED_MESSAGE = "PDF chapter creation job enqueued"


def utcnow() -> datetime:
    """The current time in UTC, at MongoDB's precision (milliseconds)."""
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def new_id() -> str:
    """A fresh UUID4 as a string: the public id of jobs, chapters and chunks."""
    return str(uuid4())


class JobStatus(StrEnum):
    """The lifecycle of a job. ``completed``, ``failed`` and ``cancelled`` are terminal."""

    pending = "pending"
    processing = "processing"
    completed = "completed"
    failed = "failed"
    cancelled = "cancelled"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STATUSES


TERMINAL_STATUSES = frozenset({JobStatus.completed, JobStatus.failed, JobStatus.cancelled})


class JobResult(BaseModel):
    """What a completed job made."""

    chapter_id: str
    total_pages: int = Field(ge=0)


class PdfChapterJob(Document):
    """A request to turn one uploaded PDF into one book chapter."""

    job_id: str = Field(default_factory=new_id)
    user_id: str
    book_id: str
    file_id: str

    status: JobStatus = JobStatus.pending
    progress: int = Field(default=0, ge=0, le=100)
    message: str = ENQUEUED_MESSAGE

    result: JobResult | None = None
    error: str | None = None

    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    started_at: datetime | None = None
    completed_at: datetime | None = None
    failed_at: datetime | None = None
    cancelled_at: datetime | None = None

    # Incremented by every write; the polling endpoint's ETag.
    version: int = 1
    # Set by the worker while it holds the job; a stale heartbeat means the worker is gone.
    heartbeat_at: datetime | None = None
    # How many times a worker has claimed the job.
    attempts: int = 0

    class Settings:
        name = "pdf_chapter_jobs"
        # The TTL index on created_at depends on JOB_TTL_DAYS and is added by indexes/spec.py.
        indexes = [  # noqa: RUF012 - Beanie reads a plain class attribute
            pymongo.IndexModel([("job_id", pymongo.ASCENDING)], name="job_id_unique", unique=True),
            pymongo.IndexModel(
                [("user_id", pymongo.ASCENDING), ("status", pymongo.ASCENDING)],
                name="user_id_status",
            ),
            pymongo.IndexModel([("updated_at", pymongo.ASCENDING)], name="updated_at"),
        ]


DOCUMENT_MODELS: list[type[Document]] = [PdfChapterJob]
