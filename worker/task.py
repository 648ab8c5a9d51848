"""The job function: one PDF becomes one chapter, with live progress in seed 002's phases.

Whatever happens inside, the job leaves ``processing`` or is left to the sweeper: completed;
failed with a reason when the PDF cannot be processed; handed back to ``pending`` when the worker
stops or its infrastructure fails (to be resumed, never failed for it); or, when its lease is
lost, left alone (another run has it, or its owner cancelled it: then this run's output goes).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import tempfile
import time
from dataclasses import dataclass
from typing import Any

from service.domain import lifecycle
from service.domain.job import (
    JobStatus,
    chapter_created,
    chapter_title,
    creating_chapter,
    downloading,
    extracting,
    percent,
    utcnow,
)
from service.domain.stages import Stage, StageStatus, stage_fields, stage_percent
from service.logs import current_job_id
from service.settings import Settings
from service.store import chapters
from service.store.documents import JobDoc
from service.store.doorbell import ring
from service.store.failure import is_transient
from service.store.files import BUCKET, open_file
from service.store.job_store import apply, get_job, jobs
from worker import metrics
from worker.extract import ExtractionError
from worker.heartbeat import keep_alive
from worker.isolation import PageBatch, extract_in_child
from worker.progress import LeaseLost, ProgressWriter, Run
from worker.retry import Patience

log = logging.getLogger("worker.task")

FILE_MISSING = ExtractionError("FILE_NOT_FOUND", "PDF file not found")
# A job whose run lost its lease to one of these ends up without a chapter: its output goes.
DISCARDED = frozenset({JobStatus.cancelled, JobStatus.failed})
CLAIMED = {"_id": 0, "job_id": 1, "user_id": 1, "book_id": 1, "file_id": 1, "lease_id": 1,
           "chapter_id": 1, "attempts": 1}  # fmt: skip


async def process_pdf_chapter(ctx: dict[str, Any], job_id: str) -> str:
    """arq entry point. Returns what happened, for arq's result log."""
    token = current_job_id.set(job_id)
    try:
        return await _process(ctx, job_id)
    finally:
        current_job_id.reset(token)


async def _process(ctx: dict[str, Any], job_id: str) -> str:
    settings: Settings = ctx["settings"]
    # MongoDB down when the doorbell rings: wait here rather than drop the doorbell.
    patience = Patience()
    job = await patience.call(lambda: get_job(job_id, {"_id": 0, "file_id": 1}), "read the job")
    if job is None:
        return "gone"
    db = jobs().database
    file_doc = await patience.call(
        lambda: db[f"{BUCKET}.files"].find_one({"_id": job["file_id"]}, {"filename": 1}),
        "read the file",
    )
    filename = (file_doc or {}).get("filename") or "document.pdf"
    claims: list[lifecycle.Write] = []

    async def claim() -> JobDoc | None:
        claims.append(lifecycle.claim(job_id, downloading(filename)[1], utcnow()))
        return await apply(claims[-1], CLAIMED)

    claimed = await patience.call(claim, "claim the job")
    if claimed is None and len(claims) > 1:
        # An earlier attempt may have landed before its answer was lost: then the job is ours.
        landed = await patience.call(lambda: get_job(job_id, CLAIMED), "read the job")
        if landed is not None and landed.get("lease_id") in {c.lease_id for c in claims}:
            claimed = landed
    if claimed is None:
        return "not pending"  # another worker has it, or it finished or was cancelled
    run = Run(job_id, str(claimed["lease_id"]))
    log.info("job %s: processing %s (attempt %d)", job_id, filename, claimed.get("attempts", 1))
    heartbeat = asyncio.create_task(
        keep_alive(run, settings.heartbeat_interval_s, settings.stale_after_s)
    )
    metrics.RUNNING.inc()
    started = time.monotonic()
    outcome = "released"
    try:
        outcome = await _run(settings, db, run, dict(claimed), filename)
        return outcome
    except ExtractionError as exc:
        if exc.code == "TIMEOUT" and run.patience.waited_s > 0:
            # The time limit ran out while this run waited for MongoDB: not the PDF's fault.
            outcome = await _hand_back(ctx, run, exc)
            return outcome
        outcome = "failed"
        with contextlib.suppress(LeaseLost):
            await run.fail(exc.reason, exc.code)
            log.info("job %s: failed: %s", job_id, exc.reason, extra={"error_code": exc.code})
            return f"failed: {exc.code}"
        outcome = await _lost(job_id)
        return outcome
    except LeaseLost:
        outcome = await _lost(job_id)
        return outcome
    except asyncio.CancelledError:
        # The worker is shutting down: hand the job back so it resumes elsewhere, now.
        with contextlib.suppress(Exception):
            await asyncio.shield(run.release())
        raise
    except Exception as exc:
        if is_transient(exc):
            # MongoDB or Redis failed under us: not the PDF's fault. Hand the job back.
            return await _hand_back(ctx, run, exc)
        log.exception("job %s: unexpected error", job_id)
        outcome = "failed"
        with contextlib.suppress(LeaseLost):
            await run.fail("Internal error while processing the PDF", "INTERNAL")
        return "failed: INTERNAL"
    finally:
        metrics.RUNNING.dec()
        metrics.JOBS_FINISHED.labels(outcome=outcome).inc()
        metrics.JOB_SECONDS.observe(time.monotonic() - started)
        heartbeat.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await heartbeat


async def _hand_back(ctx: dict[str, Any], run: Run, exc: Exception) -> str:
    """Release the job to be resumed (now, or by the sweeper once its heartbeat is stale)."""
    log.warning("job %s: infrastructure failure (%s); handing the job back", run.job_id, exc)
    with contextlib.suppress(Exception):
        await run.release()
        await ring(ctx["redis"], run.job_id, f"released-{int(time.time() * 1000)}")
    return "released"


async def _lost(job_id: str) -> str:
    """This run's lease is gone. Only a job that ends without a chapter loses its output: a
    cancelled one (by its owner) or a failed one. A job another run holds or completed is left
    exactly as it is."""
    job = await get_job(job_id, {"_id": 0, "status": 1})
    status = JobStatus(job["status"]) if job is not None else None
    if status in DISCARDED:
        await chapters.discard(job_id)
        log.info("job %s: stopped: %s; its output was discarded", job_id, status)
        return "cancelled" if status is JobStatus.cancelled else "lost"
    log.warning(
        "job %s: stopped: the lease was lost (job is %s); nothing discarded", job_id, status
    )
    return "lost"


@dataclass
class _Extraction:
    total: int = 0
    done: int = 0
    title: str | None = None


async def _run(settings: Settings, db: Any, run: Run, job: dict[str, Any], filename: str) -> str:
    writer = ProgressWriter(run, interval_s=settings.progress_interval_s)
    chapter_id = str(job["chapter_id"])
    with tempfile.TemporaryDirectory(prefix="pcj-") as workdir:
        path = os.path.join(workdir, "source.pdf")
        await run.patience.call(lambda: _download(db, job["file_id"], path), "download the PDF")
        now = utcnow()
        downloaded = {
            **stage_fields(Stage.download_pdf, StageStatus.completed, now, 100),
            **stage_fields(Stage.extract_pages, StageStatus.processing, now, 0),
        }
        await run.advance(*downloading(filename), downloaded)
        state = _Extraction()

        async def on_meta(total: int, title: str | None) -> bool:
            state.total, state.title = total, title
            await writer.report(*extracting(0, total), {"pages_total": total}, force=True)
            return True

        async def on_pages(batch: PageBatch) -> bool:
            total = state.total
            pages = [(index, text) for index, text, _ in batch]
            await run.patience.call(
                lambda: chapters.write_pages(job, chapter_id, filename, total, pages), "write pages"
            )
            errors = [
                {"page_number": index + 1, "error": error}
                for index, _, error in batch
                if error is not None
            ]
            state.done = done = state.done + len(batch)
            metrics.PAGES.inc(len(batch))
            await writer.report(
                *extracting(done, total),
                {
                    "pages_processed": done,
                    **stage_percent(Stage.extract_pages, percent(done, total)),
                },
                page_errors=errors,
            )
            return True

        await extract_in_child(
            path,
            memory_limit_bytes=settings.job_memory_limit_mb * 1024 * 1024,
            time_limit_s=settings.job_time_limit_s,
            on_meta=on_meta,
            on_pages=on_pages,
        )
    await writer.flush()
    total = state.total
    now = utcnow()
    extracted = {
        "pages_total": total,
        "pages_processed": total,
        **stage_fields(Stage.extract_pages, StageStatus.completed, now, 100),
        **stage_fields(Stage.create_chapter, StageStatus.processing, now, 0),
    }
    await run.advance(*creating_chapter(total), extracted)
    title = chapter_title(state.title, filename)
    await run.patience.call(
        lambda: chapters.create_chapter(job, chapter_id, title, total, filename),
        "create the chapter",
    )
    result = {"chapter_id": chapter_id, "total_pages": total}
    created = stage_fields(Stage.create_chapter, StageStatus.completed, utcnow(), 100)
    await run.complete(result, chapter_created(total)[1], created)
    log.info("job %s: completed, %d pages", run.job_id, total)
    return "completed"


async def _download(db: Any, file_id: str, path: str) -> None:
    """Stream the PDF from GridFS to a local file, chunk by chunk."""
    grid_out = await open_file(db, file_id)
    if grid_out is None:
        raise FILE_MISSING
    with open(path, "wb") as out:  # noqa: ASYNC230 - local temp file, chunk-sized writes
        while chunk := await grid_out.readchunk():
            out.write(chunk)
