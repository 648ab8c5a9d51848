"""The job store: the one place that writes job state, and the reads every contract shares.

``apply`` is the only function that changes a job's state: it applies a transition built by
``service/domain/lifecycle.py`` as one guarded atomic update. Everything else here reads, inserts
a new job, deletes one, or removes what a job that ended without a chapter wrote (``discard``).

A job is written to MongoDB before its doorbell rings: if Redis is down the client still gets its
job, and the sweeper rings it once Redis is back.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
from typing import Any, cast
from uuid import UUID

from arq.connections import ArqRedis
from pymongo import ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

from service.domain import lifecycle
from service.domain.chapter import ChapterOptions
from service.domain.errors import Conflict, InvalidRequest, NotFound, TooManyActiveJobs
from service.domain.job import ACTIVE_STATUSES, JobStatus, utcnow
from service.domain.lifecycle import Write
from service.domain.page_keys import chapter_prefix
from service.store.chapters import chapters, chunks
from service.store.documents import JobDoc, PdfChapterJob
from service.store.doorbell import ring
from service.store.failure import is_transient
from service.store.files import find_owned_file
from service.store.page_images import PageStore, PageStoreError
from service.store.quota import ensure_active_slot
from service.store.reader import JobReader

log = logging.getLogger("service.job_store")

Doc = dict[str, Any]
ACTIVE = sorted(status.value for status in ACTIVE_STATUSES)
# A user's jobs newest first; job_id breaks ties (index user_id_created_at).
NEWEST_FIRST = [("created_at", -1), ("job_id", -1)]
# What a transition returns by default: enough for its caller to go on.
APPLIED_FIELDS = {
    "_id": 0,
    "job_id": 1,
    "user_id": 1,
    "status": 1,
    "lease_id": 1,
    "chapter_id": 1,
    "attempts": 1,
    "version": 1,
}


def jobs() -> AsyncCollection[Doc]:
    return PdfChapterJob.get_pymongo_collection()


async def apply(write: Write, projection: dict[str, int] | None = None) -> JobDoc | None:
    """Apply one transition as one guarded atomic update: the job after it (``projection``'s
    fields), or None when its guard no longer held (another status, another lease), in which
    case nothing was written."""
    doc = await jobs().find_one_and_update(
        write.filter,
        write.pipeline,
        projection=projection or APPLIED_FIELDS,
        return_document=ReturnDocument.AFTER,
    )
    return cast(JobDoc | None, doc)


async def discard(
    job_id: str, store: PageStore, chapter_id: str | None = None, *, final: bool = True
) -> None:
    """Remove what a job wrote that ends without a chapter (cancelled, failed): every image under
    its chapter's prefix (``chapter_id``'s too: a run knows its chapter when its job is no longer
    there to say), then its chunks and its chapter if it got that far. Idempotent; a page store
    that cannot be reached raises, before anything else is removed.

    ``final`` clears ``discard_pending``: for the sweeper and the API, which discard once no run
    writes any more. A run's own discard is not final: an upload the store committed after the
    run gave up on it, or a page it wrote after another discard, is removed by the sweeper's
    pass once the job has been still for ``STALE_AFTER_S``.
    """
    job = await PdfChapterJob.get_pymongo_collection().find_one(
        {"job_id": job_id}, {"chapter_id": 1}
    )
    chapter_ids = {doc["chapter_id"] async for doc in chapters().find({"job_id": job_id})}
    if job is not None and job.get("chapter_id"):
        chapter_ids.add(job["chapter_id"])
    if chapter_id:
        chapter_ids.add(chapter_id)
    for each in chapter_ids:
        await store.delete_prefix(chapter_prefix(each))
    await chunks().delete_many({"job_id": job_id})
    await chapters().delete_many({"job_id": job_id})
    if final:
        await apply(lifecycle.discarded(job_id, utcnow()))


async def discard_or_leave(
    job_id: str, store: PageStore, chapter_id: str | None = None, *, final: bool = True
) -> bool:
    """``discard``, for a worker that must go on whatever happens: False (logged) when it
    failed, the job then still ``discard_pending`` for the sweeper's next pass."""
    try:
        await discard(job_id, store, chapter_id, final=final)
    except Exception as exc:
        log.warning(
            "job %s: its output could not be removed now (%s): the sweeper tries again",
            job_id, type(exc).__name__,
        )  # fmt: skip
        return False
    return True


# --- Reads ---------------------------------------------------------------------------------


def canonical_job_id(raw: str) -> str | None:
    """The canonical form of a UUID job id, or None when it is not one."""
    try:
        return str(UUID(raw))
    except ValueError:
        return None


async def get_job(job_id: str, projection: dict[str, int]) -> JobDoc | None:
    """A job by its canonical id, whoever owns it (the caller checks)."""
    return cast(JobDoc | None, await jobs().find_one({"job_id": job_id}, projection))


async def find_owned_job(
    raw_job_id: str, user_id: str, projection: dict[str, int]
) -> JobDoc | None:
    """The caller's job by id, or None: a malformed id, an unknown one and another user's alike."""
    job_id = canonical_job_id(raw_job_id)
    if job_id is None:
        return None
    doc = await jobs().find_one({"job_id": job_id, "user_id": user_id}, projection)
    return cast(JobDoc | None, doc)


async def read_owned_job(reader: JobReader, raw_job_id: str, user_id: str) -> JobDoc | None:
    """``find_owned_job`` for the polled views: the read is coalesced with others in flight."""
    job_id = canonical_job_id(raw_job_id)
    if job_id is None:
        return None
    doc = await reader.read(job_id)
    return doc if doc is not None and doc["user_id"] == user_id else None


async def list_jobs(
    user_id: str,
    projection: dict[str, int],
    *,
    status: JobStatus | None = None,
    file_id: str | None = None,
    after: Doc | None = None,
    offset: int = 0,
    limit: int,
) -> list[JobDoc]:
    """The caller's jobs newest first, optionally of one status or one uploaded file, continuing
    ``after`` a cursor's position or from ``offset``."""
    query: Doc = {"user_id": user_id, **(after or {})}
    if status is not None:
        query["status"] = status.value
    if file_id is not None:
        query["file_id"] = file_id
    found = jobs().find(query, projection).sort(NEWEST_FIRST).skip(offset).limit(limit)
    return cast(list[JobDoc], await found.to_list())


# --- Creating, cancelling, deleting -----------------------------------------------------------


def fingerprint(book_id: str, file_id: str, options: ChapterOptions) -> str:
    """A digest of everything a create request asked for (Idempotency-Key replays compare it)."""
    asked = {"book_id": book_id, "file_id": file_id, **dataclasses.asdict(options)}
    return hashlib.sha256(json.dumps(asked, sort_keys=True).encode()).hexdigest()


async def create_job(
    queue: ArqRedis,
    db: Any,
    *,
    user_id: str,
    book_id: str,
    file_id: str,
    options: ChapterOptions,
    idempotency_key: str | None = None,
    max_active: int | None = None,
) -> JobDoc:
    """Store a pending job of the caller's uploaded file, then ring the doorbell.

    With an ``Idempotency-Key``, the same key and body return the original job, and the same key
    with another body is a 422. A ``parent_id`` must name one of the caller's chapters in the
    same book (422), and a ``slug`` asked for must be free in the book (409). With
    ``max_active``, a caller who already has that many pending or processing jobs gets
    ``TooManyActiveJobs`` (429), checked before the insert and again after it
    (service/store/quota.py), before any worker hears of the job.
    """
    await find_owned_file(db, file_id, user_id)
    request_fingerprint = fingerprint(book_id, file_id, options)
    if idempotency_key is not None:
        existing = await jobs().find_one({"user_id": user_id, "idempotency_key": idempotency_key})
        if existing is not None:
            return _replay(existing, request_fingerprint)
    await check_placement(user_id, book_id, options)
    if max_active is not None:
        await ensure_active_slot(user_id, max_active)
    job = PdfChapterJob(
        user_id=user_id,
        book_id=book_id,
        file_id=file_id,
        **dataclasses.asdict(options),  # the job keeps every option under its own name
        idempotency_key=idempotency_key,
        request_fingerprint=request_fingerprint if idempotency_key else None,
    )
    doc = job.model_dump(by_alias=True, exclude={"id"})
    try:
        await jobs().insert_one(doc)
    except DuplicateKeyError:
        # Two requests with one key raced: the other one's job is the job.
        existing = await jobs().find_one({"user_id": user_id, "idempotency_key": idempotency_key})
        if existing is None:
            raise
        return _replay(existing, request_fingerprint)
    if max_active is not None:
        try:
            await ensure_active_slot(user_id, max_active, created=True)
        except TooManyActiveJobs:
            await jobs().delete_one({"job_id": job.job_id})  # a racing creation took the slot
            raise
    await ring(queue, job.job_id)
    return cast(JobDoc, doc)


async def check_placement(user_id: str, book_id: str, options: ChapterOptions) -> None:
    """The chapter's parent exists in the book, and the slug asked for is free there."""
    where = {"user_id": user_id, "book_id": book_id}
    if options.parent_id is not None and not await chapters().count_documents(
        {**where, "chapter_id": options.parent_id}, limit=1
    ):
        raise InvalidRequest(
            "parent_id names no chapter of this book",
            [{"field": "parent_id", "message": "no such chapter in this book"}],
        )
    if options.slug is not None:
        taken = await chapters().count_documents({**where, "slug": options.slug}, limit=1)
        asked = await jobs().count_documents(
            {**where, "slug": options.slug, "status": {"$in": ACTIVE}}, limit=1
        )
        if taken or asked:
            raise Conflict(f"Slug {options.slug!r} is already used in this book")


def _replay(existing: Doc, request_fingerprint: str) -> JobDoc:
    if existing.get("request_fingerprint") != request_fingerprint:
        raise InvalidRequest(
            "Idempotency-Key was already used with a different request body",
            [{"field": "Idempotency-Key", "message": "reused with a different body"}],
        )
    return cast(JobDoc, existing)


async def cancel_job(
    job_id: str, user_id: str, projection: dict[str, int], store: PageStore
) -> JobDoc:
    """Cancel a pending or processing job at once; 409 when it already finished.

    A run holding the job learns it at its next write and discards what it wrote. A job that no
    run holds (pending: never started, or handed back) has its output discarded here.
    """
    done = await apply(lifecycle.cancel(job_id, user_id, utcnow()), {**projection, "lease_id": 1})
    if done is not None:
        if done.get("lease_id") is None:
            try:
                await discard(job_id, store)
            except Exception as exc:  # the job is cancelled: the sweeper cleans up later
                if not (isinstance(exc, PageStoreError) or is_transient(exc)):
                    raise
                log.warning("job %s: cancelled; output left to the sweeper (%s)", job_id, exc)
        return done
    current = await jobs().find_one({"job_id": job_id, "user_id": user_id}, {"status": 1})
    if current is None:
        raise NotFound(f"Job {job_id} not found")
    raise Conflict(f"Job {job_id} is already {current['status']} and cannot be cancelled")


async def delete_job(job_id: str, user_id: str, store: PageStore) -> None:
    """Cancel if still active, then remove the job (a completed job's chapter stays).

    A job that ended without a chapter has its output removed first: once the job is gone the
    sweeper cannot find it. A run still writing removes what it wrote after that when it stops.
    """
    with contextlib.suppress(Conflict):
        await cancel_job(job_id, user_id, {"_id": 0, "job_id": 1}, store)
    job = await jobs().find_one({"job_id": job_id, "user_id": user_id}, {"discard_pending": 1})
    if job is not None and job.get("discard_pending"):
        await discard(job_id, store)
    result = await jobs().delete_one({"job_id": job_id, "user_id": user_id})
    if not result.deleted_count:
        raise NotFound(f"Job {job_id} not found")
