"""Job lifecycle on the API side: create (then ring the doorbell), cancel, delete.

The job is written to MongoDB before it is enqueued: if Redis is down the client still gets its
job, and the worker's sweeper enqueues it once Redis is back.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from typing import Any
from uuid import UUID

from pymongo.errors import DuplicateKeyError

from service.errors import REDIS_DOWN, Conflict, InvalidRequest, NotFound
from service.files import find_owned_file
from service.models import JobStatus, PdfChapterJob, bump_pipeline, utcnow
from service.reads import JobReader
from service.stages import StageStatus, finish_stages
from service.state import Services

log = logging.getLogger("service.jobs")

PROCESS_FUNCTION = "process_pdf_chapter"  # the worker's job function, enqueued by name
ACTIVE = [JobStatus.pending.value, JobStatus.processing.value]
# A user's jobs newest first; job_id breaks ties (index user_id_created_at).
NEWEST_FIRST = [("created_at", -1), ("job_id", -1)]


def canonical_job_id(raw: str) -> str | None:
    """The canonical form of a UUID job id, or None when it is not one."""
    try:
        return str(UUID(raw))
    except ValueError:
        return None


async def find_owned_job(
    raw_job_id: str, user_id: str, projection: dict[str, int]
) -> dict[str, Any] | None:
    """The caller's job by id, or None: a malformed id, an unknown one and another user's alike."""
    job_id = canonical_job_id(raw_job_id)
    if job_id is None:
        return None
    jobs = PdfChapterJob.get_pymongo_collection()
    doc: dict[str, Any] | None = await jobs.find_one(
        {"job_id": job_id, "user_id": user_id}, projection
    )
    return doc


async def read_owned_job(reader: JobReader, raw_job_id: str, user_id: str) -> dict[str, Any] | None:
    """``find_owned_job`` for the polled views: the read is coalesced with others in flight."""
    job_id = canonical_job_id(raw_job_id)
    if job_id is None:
        return None
    doc = await reader.read(job_id)
    return doc if doc is not None and doc["user_id"] == user_id else None


def arq_job_id(job_id: str, tag: str) -> str:
    """arq de-duplicates by id: each ring of the doorbell for a job gets its own."""
    return f"{job_id}:{tag}"


async def ring(services: Services, job_id: str) -> bool:
    """Tell a worker about a job; False (logged) when Redis is unreachable."""
    try:
        await services.queue.enqueue_job(
            PROCESS_FUNCTION, job_id, _job_id=arq_job_id(job_id, "new")
        )
    except REDIS_DOWN as exc:
        log.warning("job %s stored but not enqueued (%s); the sweeper will enqueue it", job_id, exc)
        return False
    return True


def fingerprint(book_id: str, file_id: str, title: str | None = None) -> str:
    parts = [book_id, file_id] if title is None else [book_id, file_id, title]
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()


async def create_job(
    services: Services,
    *,
    user_id: str,
    book_id: str,
    file_id: str,
    title: str | None = None,
    idempotency_key: str | None = None,
) -> tuple[dict[str, Any], bool]:
    """Store a pending job and enqueue it; returns the job and whether it is new.

    With an ``Idempotency-Key``, the same key and body return the original job, and the same key
    with another body is a 422.
    """
    await find_owned_file(services.mongo.db, file_id, user_id)
    jobs = PdfChapterJob.get_pymongo_collection()
    request_fingerprint = fingerprint(book_id, file_id, title)
    if idempotency_key is not None:
        existing = await jobs.find_one({"user_id": user_id, "idempotency_key": idempotency_key})
        if existing is not None:
            return _replay(existing, request_fingerprint), False
    job = PdfChapterJob(
        user_id=user_id,
        book_id=book_id,
        file_id=file_id,
        title=title,
        idempotency_key=idempotency_key,
        request_fingerprint=request_fingerprint if idempotency_key else None,
    )
    doc = job.model_dump(by_alias=True, exclude={"id"})
    try:
        await jobs.insert_one(doc)
    except DuplicateKeyError:
        # Two requests with one key raced: the other one's job is the job.
        existing = await jobs.find_one({"user_id": user_id, "idempotency_key": idempotency_key})
        if existing is None:
            raise
        return _replay(existing, request_fingerprint), False
    await ring(services, job.job_id)
    return doc, True


def _replay(existing: dict[str, Any], request_fingerprint: str) -> dict[str, Any]:
    if existing.get("request_fingerprint") != request_fingerprint:
        raise InvalidRequest(
            "Idempotency-Key was already used with a different request body",
            [{"field": "Idempotency-Key", "message": "reused with a different body"}],
        )
    return existing


async def cancel_job(job_id: str, user_id: str) -> dict[str, Any]:
    """Cancel a pending or processing job at once; 409 when it already finished.

    A worker processing it sees the change at its next progress write and stops.
    """
    jobs = PdfChapterJob.get_pymongo_collection()
    now = utcnow()
    doc: dict[str, Any] | None = await jobs.find_one_and_update(
        {"job_id": job_id, "user_id": user_id, "status": {"$in": ACTIVE}},
        bump_pipeline(
            {
                "status": JobStatus.cancelled.value,
                "message": {"$literal": "Job cancelled"},
                "cancelled_at": now,
                "error_code": "CANCELLED",
                "stages": finish_stages(
                    {
                        StageStatus.processing: StageStatus.cancelled,
                        StageStatus.pending: StageStatus.cancelled,
                    },
                    now,
                ),
            },
            now,
        ),
        return_document=True,
    )
    if doc is not None:
        return doc
    current = await jobs.find_one({"job_id": job_id, "user_id": user_id}, {"status": 1})
    if current is None:
        raise NotFound(f"Job {job_id} not found")
    raise Conflict(f"Job {job_id} is already {current['status']} and cannot be cancelled")


async def delete_job(job_id: str, user_id: str) -> None:
    """Cancel if still active, then remove the job (its chapter and pages stay)."""
    jobs = PdfChapterJob.get_pymongo_collection()
    with contextlib.suppress(Conflict):
        await cancel_job(job_id, user_id)
    result = await jobs.delete_one({"job_id": job_id, "user_id": user_id})
    if not result.deleted_count:
        raise NotFound(f"Job {job_id} not found")
