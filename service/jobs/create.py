"""Creating a job: every check, in the order that matters, and one clean-up path.

    1. rate         one job creation counted in the caller's 60 s window (429)
    2. upload       a form only: an active-job slot first (429, before storing anything),
                    then the PDF streamed in within the caller's limits, then the form's
                    fields validated (422)
    3. file         a JSON request only: the uploaded file is the caller's (404)
    4. replay       the same Idempotency-Key and body return the job made first (another
                    body: 422)
    5. placement    a parent_id names a chapter of the book (422); a slug is free there (409)
    6. active slot  fewer than MAX_ACTIVE_JOBS_PER_USER pending or processing jobs (429)
    7. insert       the job, then the active-job count again (a racing creation may have
                    taken the last slot: this job is removed again, 429)
    8. doorbell     a worker is told; a Redis outage is not the caller's problem (the sweeper
                    rings the job later)

An upload that cannot become a job (any failure from step 2 on) is deleted, in one place.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

from service.domain.chapter import ChapterOptions
from service.domain.errors import Conflict, InvalidRequest, TooManyActiveJobs
from service.jobs.context import Context
from service.jobs.uploads import Form, receive_pdf
from service.limits.quota import admit_job_creation, ensure_active_slot
from service.store.documents import JobDoc, PdfChapterJob
from service.store.doorbell import ring
from service.store.files import StoredFile


@dataclass(frozen=True, slots=True)
class JobRequest:
    """Which uploaded file becomes a chapter of which book, and the chapter's options."""

    book_id: str
    file_id: str
    options: ChapterOptions


# Turns a form's text fields and the id of the file it carried into a request (422 when invalid).
ParseForm = Callable[[dict[str, str], str], JobRequest]


def fingerprint(request: JobRequest) -> str:
    """A digest of everything a create request asked for (Idempotency-Key replays compare it)."""
    asked = {
        "book_id": request.book_id,
        "file_id": request.file_id,
        **dataclasses.asdict(request.options),
    }
    return hashlib.sha256(json.dumps(asked, sort_keys=True).encode()).hexdigest()


async def create_job(
    ctx: Context,
    user_id: str,
    *,
    request: JobRequest | None = None,
    form: Form | None = None,
    parse_form: ParseForm | None = None,
    idempotency_key: str | None = None,
) -> JobDoc:
    """A pending job of the caller's file (``request``), or of the PDF the ``form`` carries
    (``parse_form`` reads its other fields); the checks are in the module docstring."""
    await admit_job_creation(ctx.limiter, ctx.settings, user_id)
    uploaded: StoredFile | None = None
    try:
        if form is not None:
            if parse_form is None:
                raise TypeError("a form needs parse_form")
            # Before the upload: a PDF that could only become a refused job is never stored.
            await ensure_active_slot(ctx.store, ctx.settings, user_id)
            fields, uploaded = await receive_pdf(ctx, form, user_id)
            request = parse_form(fields, uploaded.file_id)
            filename = uploaded.filename
        elif request is not None:
            filename = (await ctx.store.files.find_owned(request.file_id, user_id)).filename
        else:
            raise TypeError("create_job needs a request or a form")
        doc, created = await _insert(ctx, user_id, request, idempotency_key, filename)
    except BaseException:
        if uploaded is not None:
            await ctx.store.files.delete(uploaded.file_id)
        raise
    if created:
        await ring(ctx.queue, doc["job_id"])
    return doc


async def _insert(
    ctx: Context, user_id: str, request: JobRequest, key: str | None, filename: str
) -> tuple[JobDoc, bool]:
    """Steps 4 to 7: the job, and whether this call created it (False: a replay)."""
    store = ctx.store
    digest = fingerprint(request)
    if key is not None:
        existing = await store.jobs.by_idempotency_key(user_id, key)
        if existing is not None:
            return _replay(existing, digest), False
    await check_placement(ctx, user_id, request)
    await ensure_active_slot(store, ctx.settings, user_id)
    job = PdfChapterJob(
        user_id=user_id,
        book_id=request.book_id,
        file_id=request.file_id,
        filename=filename,
        **dataclasses.asdict(request.options),  # the job keeps every option under its own name
        idempotency_key=key,
        request_fingerprint=digest if key else None,
    )
    doc = job.model_dump()
    if not await store.jobs.insert(doc):
        # Two requests with one key raced: the other one's job is the job.
        existing = await store.jobs.by_idempotency_key(user_id, key or "")
        if existing is None:
            raise Conflict("A request with this Idempotency-Key is being processed; retry")
        return _replay(existing, digest), False
    try:
        await ensure_active_slot(store, ctx.settings, user_id, created=True)
    except TooManyActiveJobs:
        await store.jobs.delete(job.job_id)  # a racing creation took the slot
        raise
    return cast(JobDoc, doc), True


async def check_placement(ctx: Context, user_id: str, request: JobRequest) -> None:
    """The chapter's parent exists in the book, and the slug asked for is free there."""
    chapters, options = ctx.store.chapters, request.options
    if options.parent_id is not None and not await chapters.has_chapter(
        user_id, request.book_id, options.parent_id
    ):
        raise InvalidRequest(
            "parent_id names no chapter of this book",
            [{"field": "parent_id", "message": "no such chapter in this book"}],
        )
    if options.slug is not None and (
        await chapters.slug_taken(user_id, request.book_id, options.slug)
        or await ctx.store.jobs.slug_asked(user_id, request.book_id, options.slug)
    ):
        raise Conflict(f"Slug {options.slug!r} is already used in this book")


def _replay(existing: JobDoc, digest: str) -> JobDoc:
    if existing.get("request_fingerprint") != digest:
        raise InvalidRequest(
            "Idempotency-Key was already used with a different request body",
            [{"field": "Idempotency-Key", "message": "reused with a different body"}],
        )
    return existing
