"""The job: its statuses, ids and clock, and the progress phases of the book-jobs contract.

0       PDF chapter creation job enqueued
10      Downloading PDF: <filename>
30-70   Processed <i>/<n> pages...
70      Processed <n> pages. Creating chapter...
100     Chapter created successfully with <n> pages
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any
from uuid import UUID, uuid4

ENQUEUED_MESSAGE = "PDF chapter creation job enqueued"
FAILED_PREFIX = "PDF processing failed: "
CANCELLED_MESSAGE = "Job cancelled"


def utcnow() -> datetime:
    """The current time in UTC, at MongoDB's precision (milliseconds)."""
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def new_id() -> str:
    """A fresh UUID4 as a string: the public id of jobs, chapters, chunks and leases."""
    return str(uuid4())


def canonical_id(raw: str) -> str | None:
    """The canonical form of a UUID id (a job's, a chunk's), or None when it is not one."""
    try:
        return str(UUID(raw))
    except ValueError:
        return None


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
ACTIVE_STATUSES = frozenset({JobStatus.pending, JobStatus.processing})


# --- The book-jobs contract's phases: what the progress bar shows ---------------------------

Phase = tuple[int, str]


def pages(count: int) -> str:
    """``1 page``, ``283 pages``."""
    return f"{count} page" if count == 1 else f"{count} pages"


def downloading(filename: str) -> Phase:
    return 10, f"Downloading PDF: {filename}"


def extracting(done: int, total: int) -> Phase:
    """Pages map onto 30-70%."""
    return 30 + (40 * done) // max(total, 1), f"Processed {done}/{total} pages..."


def creating_chapter(total: int) -> Phase:
    return 70, f"Processed {pages(total)}. Creating chapter..."


def chapter_created(total: int) -> Phase:
    return 100, f"Chapter created successfully with {pages(total)}"


def percent(done: int, total: int) -> int:
    """A stage's own percent."""
    return (100 * done) // max(total, 1)


def finished_at(doc: Mapping[str, Any]) -> datetime | None:
    """When a terminal job ended, whichever way it ended."""
    field = {
        JobStatus.completed: "completed_at",
        JobStatus.failed: "failed_at",
        JobStatus.cancelled: "cancelled_at",
    }.get(JobStatus(doc["status"]))
    return doc.get(field) if field else None
