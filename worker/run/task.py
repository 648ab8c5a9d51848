"""The job function: one PDF becomes one chapter, with live progress in the book-jobs contract's
phases.

Whatever happens inside, the job leaves ``processing`` or is left to the sweeper: completed;
failed with a reason when the PDF cannot be processed; handed back to ``pending`` when the worker
stops or its infrastructure fails (to be resumed, never failed for it); or, when its lease is
lost, left alone (another run has it, or its owner cancelled or deleted it: then this run's
output goes). A lost lease stops the run as soon as its heartbeat finds out.

A run resumes where the last one stopped: it renders only the pages not stored whole yet
(``worker/run/checkpoint.py``), and its progress starts from those already stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from service.domain import lifecycle
from service.domain.chapter import ContentMode, chapter_title
from service.domain.errors import ExtractionError, LeaseLost, PoolClosed, StorageQuotaExceeded
from service.domain.job import (
    JobStatus,
    chapter_created,
    creating_chapter,
    downloading,
    extracting,
    percent,
    utcnow,
)
from service.domain.page_keys import source_key
from service.domain.stages import Stage, StageStatus, stage_fields, stage_percent
from service.logs import current_job_id
from service.settings import Settings
from service.store.chapters import StoredPage
from service.store.database import Store
from service.store.discard import discard_or_leave
from service.store.documents import JobDoc
from service.store.doorbell import ring
from service.store.failure import is_transient
from worker import metrics
from worker.cancel import cancel_and_wait
from worker.consumer import STOPPING
from worker.rendering.pool import RenderPool
from worker.run.checkpoint import read_checkpoint
from worker.run.heartbeat import keep_alive
from worker.run.lease import ProgressWriter, Run
from worker.run.pages import process_pages, render_options
from worker.run.patience import Patience
from worker.run.room import TextMeter, ensure_room, over_quota
from worker.run.turn import give_back_unstarted, has_turn, next_in_line

log = logging.getLogger("worker.run.task")

Doc = dict[str, Any]

FILE_MISSING = ExtractionError("FILE_NOT_FOUND", "PDF file not found")


def too_many_pages(total: int, limit: int) -> ExtractionError:
    return ExtractionError(
        "PDF_TOO_MANY_PAGES", f"PDF has {total} pages; at most {limit} are allowed (MAX_PAGES)"
    )


# What a run needs of its job.
CLAIMED_FIELDS = {
    "_id": 0,
    **dict.fromkeys(
        ["job_id", "user_id", "book_id", "file_id", "lease_id", "chapter_id", "attempts", "title",
         "content_mode", "slug", "order_index", "parent_id", "is_published", "is_preview_free"],
        1,
    ),
}  # fmt: skip
# How long a run whose lease is gone waits for MongoDB to learn what became of its job.
LOST_PATIENCE_S = 30.0
# A job whose run lost its lease to one of these ends up without a chapter: its output goes.
DISCARDED = frozenset({JobStatus.cancelled, JobStatus.failed})
# In ctx: the id of this worker ("host/slot", worker/identity.py), which the leases it opens carry.
WORKER_ID = "worker_id"


async def process_pdf_chapter(ctx: dict[str, Any], job_id: str) -> str:
    """arq entry point. Returns what happened, for arq's result log."""
    token = current_job_id.set(job_id)
    try:
        return await _process(ctx, job_id)
    finally:
        current_job_id.reset(token)


async def _process(ctx: dict[str, Any], job_id: str) -> str:
    settings: Settings = ctx["settings"]
    if ctx.get(STOPPING):
        # Started after the worker was told to stop, by a poll that did not see the signal's
        # cancellation (``worker/consumer.py``): cancelled like the jobs running then, arq keeps
        # the doorbell for another worker.
        log.info("job %s: not started: the worker is stopping", job_id)
        raise asyncio.CancelledError
    store: Store = ctx["store"]
    # MongoDB down when the doorbell rings: wait here rather than drop the doorbell.
    patience = Patience()
    job = await patience.call(
        lambda: store.jobs.get(job_id, {"_id": 0, "file_id": 1, "user_id": 1}), "read the job"
    )
    if job is None:
        return "gone"
    user_id = str(job["user_id"])
    if not await patience.call(lambda: has_turn(store, settings, user_id, job_id), "count runs"):
        # The owner's other jobs hold their share of the workers: this one waits, pending,
        # and this slot takes the next doorbell (worker/run/turn.py).
        log.info("job %s: waits for its owner's running jobs", job_id)
        return "waiting"
    filename = await patience.call(lambda: store.files.filename_of(job["file_id"]), "read the file")
    claims: list[lifecycle.Write] = []

    async def claim() -> JobDoc | None:
        message = downloading(filename)[1]
        claims.append(lifecycle.claim(job_id, message, utcnow(), ctx.get(WORKER_ID)))
        return await store.jobs.apply(claims[-1], CLAIMED_FIELDS)

    claimed = await patience.call(claim, "claim the job")
    if claimed is None and len(claims) > 1:
        # An earlier attempt may have landed before its answer was lost: then the job is ours.
        landed = await patience.call(lambda: store.jobs.get(job_id, CLAIMED_FIELDS), "read the job")
        if landed is not None and landed.get("lease_id") in {c.lease_id for c in claims}:
            claimed = landed
    if claimed is None:
        return "not pending"  # another worker has it, or it finished or was cancelled
    if not await patience.call(lambda: has_turn(store, settings, user_id, job_id), "count runs"):
        # A claim of the same owner's job raced this one for their last turn.
        await give_back_unstarted(ctx["redis"], store, patience, job_id, str(claimed["lease_id"]))
        return "waiting"
    run = Run(job_id, str(claimed["lease_id"]), store.jobs)
    run_chapter = str(claimed["chapter_id"])
    log.info("job %s: processing %s (attempt %d)", job_id, filename, claimed.get("attempts", 1))
    # The run is a task of its own, so that its heartbeat can stop it the moment the lease is
    # found gone, without taking it for the worker's shutdown (which cancels this task).
    completing = asyncio.Event()
    work = asyncio.create_task(
        _run(
            settings, store, ctx["render_pool"], run, dict(claimed), filename,
            stopping=lambda: bool(ctx.get(STOPPING)), completing=completing,
        ),
        name=f"run {job_id}",
    )  # fmt: skip
    lost = asyncio.Event()

    def lease_lost() -> None:
        lost.set()
        # A beat just after the completion landed finds the job completed: not a loss. Had the
        # lease really gone, the completion fails by itself.
        if not completing.is_set():
            work.cancel()

    heartbeat = asyncio.create_task(
        keep_alive(
            run.beat,
            f"job {job_id}",
            settings.heartbeat_interval_s,
            settings.stale_after_s,
            lease_lost,
        )
    )
    metrics.RUNNING.inc()
    started = time.monotonic()
    outcome = "released"
    try:
        outcome = await _unless_lost(work, lost, job_id)
        if outcome == "completed" and (indexer := ctx.get("indexer")) is not None:
            indexer.wake()  # its chapter is ready: index it now, not at the next look
        return outcome
    except ExtractionError as exc:
        if exc.code == "TIMEOUT" and run.patience.waited_s > 0:
            # The time limit ran out while this run waited for MongoDB: not the PDF's fault.
            outcome = await _hand_back(ctx, run, exc, run_chapter)
            return outcome
        outcome = "failed"
        with contextlib.suppress(LeaseLost):
            await run.fail(exc.reason, exc.code)
            # A failed job keeps no pages; not final: the sweeper's pass removes what lands late.
            await discard_or_leave(store, job_id, final=False)
            log.info("job %s: failed: %s", job_id, exc.reason, extra={"error_code": exc.code})
            return f"failed: {exc.code}"
        outcome = await _lost(store, job_id, run_chapter)
        return outcome
    except LeaseLost:
        outcome = await _lost(store, job_id, run_chapter)
        return outcome
    except PoolClosed:
        # The worker is stopping, its render processes first: hand the job back.
        outcome = await _release(ctx, run, run_chapter)
        return outcome
    except asyncio.CancelledError:
        # The worker is shutting down: hand the job back so it resumes elsewhere, now.
        with contextlib.suppress(Exception):
            await asyncio.shield(_release(ctx, run, run_chapter))
        raise
    except Exception as exc:
        if is_transient(exc):
            # MongoDB or Redis failed under us: not the PDF's fault. Hand the job back.
            outcome = await _hand_back(ctx, run, exc, run_chapter)
            return outcome
        log.exception("job %s: unexpected error", job_id)
        outcome = "failed"
        with contextlib.suppress(LeaseLost):
            await run.fail("Internal error while processing the PDF", "INTERNAL")
            await discard_or_leave(store, job_id, final=False)
            return "failed: INTERNAL"
        outcome = await _lost(store, job_id, run_chapter)
        return outcome
    finally:
        metrics.RUNNING.dec()
        metrics.JOBS_FINISHED.labels(outcome=outcome).inc()
        metrics.JOB_SECONDS.observe(time.monotonic() - started)
        await cancel_and_wait(heartbeat)  # one cancel() may be lost in a MongoDB call
        if not ctx.get(STOPPING) and ctx.get("redis") is not None:
            await next_in_line(ctx["redis"], store, user_id)  # its next job may have waited


async def _unless_lost(work: asyncio.Task[str], lost: asyncio.Event, job_id: str) -> str:
    """``work``'s outcome; ``LeaseLost`` when its heartbeat cancelled it for a lost lease (a
    cancellation of this task itself, the worker stopping, stays a cancellation)."""
    try:
        return await work
    except asyncio.CancelledError:
        current = asyncio.current_task()
        if lost.is_set() and (current is None or not current.cancelling()):
            raise LeaseLost(job_id) from None
        raise


async def _hand_back(ctx: dict[str, Any], run: Run, exc: Exception, chapter_id: str) -> str:
    """Release the job to be resumed (now, or by the sweeper once its heartbeat is stale)."""
    log.warning("job %s: infrastructure failure (%s); handing the job back", run.job_id, exc)
    outcome = await _release(ctx, run, chapter_id)
    if outcome == "released":
        with contextlib.suppress(Exception):
            await ring(ctx["redis"], run.job_id, f"released-{int(time.time() * 1000)}", first=True)
    return outcome


async def _release(ctx: dict[str, Any], run: Run, chapter_id: str) -> str:
    """Hand the job back; a job no longer this run's (cancelled, say) is ``_lost`` instead."""
    try:
        await run.release()
    except LeaseLost:
        return await _lost(ctx["store"], run.job_id, chapter_id)
    except Exception as exc:  # the sweeper releases it once its heartbeat is stale
        log.warning("job %s: not handed back (%s)", run.job_id, type(exc).__name__)
    return "released"


async def _lost(store: Store, job_id: str, chapter_id: str) -> str:
    """This run's lease is gone. Only a job that ends without a chapter loses its output: a
    cancelled one (by its owner), a failed one, or one deleted while it ran (its tombstone says
    so; or, once that has expired, no chapter of it exists). A job another run holds or
    completed is left exactly as it is. Should this run die before it is done here, the
    sweeper removes the output all the same (``discard_pending``, or the tombstone)."""
    # MongoDB down now: wait, but not forever: a stopping worker comes here too.
    patience = Patience(give_up_after_s=LOST_PATIENCE_S)
    job = await patience.call(
        lambda: store.jobs.get(job_id, {"_id": 0, "status": 1}), "read the job"
    )
    status = JobStatus(job["status"]) if job is not None else None
    deleted = job is None and (
        await patience.call(lambda: store.tombstones.of(job_id), "read the tombstone") is not None
        or not await patience.call(lambda: store.chapters.of_job(job_id), "read the chapter")
    )
    if status in DISCARDED or deleted:
        await discard_or_leave(store, job_id, chapter_id, final=False)
        log.info("job %s: stopped: %s; its output was discarded", job_id, status or "deleted")
        return "cancelled" if status is JobStatus.cancelled else "lost"
    log.warning(
        "job %s: stopped: the lease was lost (job is %s); nothing discarded", job_id, status
    )
    return "lost"


async def _run(
    settings: Settings,
    store: Store,
    pool: RenderPool,
    run: Run,
    job: dict[str, Any],
    filename: str,
    stopping: Callable[[], bool] = lambda: False,
    completing: asyncio.Event | None = None,
) -> str:
    writer = ProgressWriter(run, interval_s=settings.progress_interval_s)
    chapter_id = str(job["chapter_id"])
    mode = ContentMode(job.get("content_mode") or ContentMode.pdf_pages)
    options = render_options(settings, images=mode is ContentMode.pdf_pages)
    with tempfile.TemporaryDirectory(prefix="pcj-") as workdir:
        path = os.path.join(workdir, "source.pdf")
        await run.patience.call(lambda: _download(store, job["file_id"], path), "download the PDF")
        now = utcnow()
        downloaded = {
            **stage_fields(Stage.download_pdf, StageStatus.completed, now, 100),
            **stage_fields(Stage.extract_pages, StageStatus.processing, now, 0),
        }
        await run.advance(*downloading(filename), downloaded)
        try:
            async with asyncio.timeout(settings.job_time_limit_s) as deadline:
                info = await pool.open(path, str(job["user_id"]))
                total = info.page_count
                if total > settings.max_pages:
                    raise too_many_pages(total, settings.max_pages)
                # Where the last run stopped: the pages stored whole are kept, the rest rendered.
                checkpoint = await run.patience.call(
                    lambda: read_checkpoint(store, run.job_id, chapter_id, total),
                    "read the stored pages",
                )
                done = len(checkpoint.kept)
                if done or checkpoint.replaced:
                    log.info(
                        "job %s: resuming: %d of %d pages stored, %d to render again",
                        run.job_id, done, total, checkpoint.replaced,
                    )  # fmt: skip
                await run.patience.call(
                    lambda: ensure_room(store, pool, settings, job, path, options),
                    "check the storage quota",
                )
                await writer.report(
                    *extracting(done, total),
                    {
                        "pages_total": total,
                        "pages_ocr": checkpoint.ocr,
                        "repaired": info.repaired,
                        **stage_percent(Stage.extract_pages, percent(done, total)),
                    },
                    page_errors=checkpoint.problems,
                    pages_processed=done,
                    force=True,
                )
                ocr_pages = checkpoint.ocr
                text = TextMeter(store.images, str(job["user_id"]), chapter_id)
                if checkpoint.text_bytes:
                    await run.patience.call(
                        lambda: text.hold_kept(checkpoint.text_bytes), "count text"
                    )

                async def on_stored(
                    batch: list[StoredPage], problems: list[dict[str, Any]]
                ) -> None:
                    nonlocal done, ocr_pages
                    if stopping():
                        # The worker is stopping and this job's cancellation was lost on the
                        # way (worker/cancel.py): hand the job back now, not once it is done.
                        raise asyncio.CancelledError
                    await run.patience.call(lambda: text.before_write(batch), "count text")
                    await run.patience.call(
                        lambda: store.chapters.write_pages(job, chapter_id, filename, total, batch),
                        "write pages",
                    )
                    done += len(batch)
                    ocr_pages += sum(page.text_source == "ocr" for page in batch)
                    metrics.PAGES.inc(len(batch))
                    await writer.report(
                        *extracting(done, total),
                        {
                            "pages_ocr": ocr_pages,
                            **stage_percent(Stage.extract_pages, percent(done, total)),
                        },
                        page_errors=problems,
                        pages_processed=done,
                    )

                await process_pages(
                    pool, store.images, path, checkpoint.todo(total), chapter_id, options,
                    on_stored, run.patience, owner=str(job["user_id"]),
                )  # fmt: skip
                await run.patience.call(text.flush, "count text")
        except TimeoutError:
            if not deadline.expired():
                raise
            limit = settings.job_time_limit_s
            raise ExtractionError(
                "TIMEOUT", f"PDF processing timed out after {limit:g} s"
            ) from None
        pdf_key = None
        if mode is ContentMode.pdf_file:  # the PDF itself is the chapter: a copy, streamed
            pdf_key = key = source_key(chapter_id)
            try:
                await run.patience.call(
                    lambda: store.images.put_file(
                        key, Path(path), "application/pdf", owner=str(job["user_id"])
                    ),
                    "store the PDF",
                )
            except StorageQuotaExceeded as exc:
                raise over_quota(exc) from None
    await writer.flush()
    now = utcnow()
    # Every page stored: the count is whole, and the next phase's message replaces the last
    # "Processed i/n pages..." at the same percentage (no pages_processed tie-break here).
    extracted = {
        "pages_total": total,
        "pages_processed": total,
        **stage_fields(Stage.extract_pages, StageStatus.completed, now, 100),
        **stage_fields(Stage.create_chapter, StageStatus.processing, now, 0),
    }
    await run.advance(*creating_chapter(total), extracted)
    title = chapter_title(job.get("title"), info.title, filename)
    await run.patience.call(
        lambda: store.chapters.create_chapter(
            job,
            chapter_id,
            title,
            total,
            filename,
            repaired=info.repaired,
            pdf_key=pdf_key,
            outline=info.outline,
        ),
        "create the chapter",
    )
    result = {"chapter_id": chapter_id, "total_pages": total}
    created = stage_fields(Stage.create_chapter, StageStatus.completed, utcnow(), 100)
    if completing is not None:
        completing.set()
    await run.complete(result, chapter_created(total)[1], created)
    log.info("job %s: completed, %d pages", run.job_id, total)
    return "completed"


async def _download(store: Store, file_id: str, path: str) -> None:
    """Stream the PDF from GridFS to a local file, chunk by chunk (about 1 MB held)."""
    chunks = await store.files.chunks(file_id)
    if chunks is None:
        raise FILE_MISSING
    with open(path, "wb") as out:  # noqa: ASYNC230 - local temp file, chunk-sized writes
        async for chunk in chunks:
            out.write(chunk)
