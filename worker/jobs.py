"""The job function: one PDF becomes one chapter, with live progress (seed 002's phases).

    0-10   Downloading PDF: <filename>
    30-70  Processed <i>/<n> pages...
    70     Processed <n> pages. Creating chapter...
    100    Chapter created successfully with <n> pages

Whatever happens inside, the job leaves ``processing``: completed, failed with a reason,
cancelled, or (worker stopping) released back to ``pending`` to be resumed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from service.files import BUCKET, open_file
from service.logs import current_job_id
from service.models import PdfChapterJob, utcnow
from service.settings import Settings
from service.stages import Stage, StageStatus, stage_fields, stage_percent
from worker import chapter, metrics
from worker.pool import PoolClosed, RenderPool
from worker.progress import (
    ProgressWriter,
    advance,
    beat,
    claim,
    complete,
    fail,
    record_page_errors,
    release,
)
from worker.render import ExtractionError, RenderedPage, RenderOptions

log = logging.getLogger("worker.jobs")

FILE_MISSING = ExtractionError("FILE_NOT_FOUND", "PDF file not found")

# Pages are stored in batches: at most this many, or what arrived within this many seconds.
BATCH_PAGES = 64
BATCH_SECONDS = 0.05


class Stopped(Exception):
    """The job left ``processing`` (cancelled) while its PDF was being read."""


def render_options(settings: Settings, *, images: bool) -> RenderOptions:
    """How this worker renders pages (``CHAPTER_DPI``, ``PAGE_IMAGE_*``, ``PAGE_MAX_PIXELS``)."""
    return RenderOptions(
        dpi=settings.chapter_dpi,
        image_format=settings.page_image_format,
        quality=settings.page_image_quality,
        max_pixels=settings.page_max_pixels,
        render_images=images,
    )


def extraction_progress(done: int, total: int) -> int:
    """Pages map onto 30-70%."""
    return 30 + (40 * done) // max(total, 1)


def percent(done: int, total: int) -> int:
    return (100 * done) // max(total, 1)


async def process_pdf_chapter(ctx: dict[str, Any], job_id: str) -> str:
    """arq entry point. Returns what happened, for arq's result log."""
    token = current_job_id.set(job_id)
    try:
        return await _process(ctx, job_id)
    finally:
        current_job_id.reset(token)


async def _process(ctx: dict[str, Any], job_id: str) -> str:
    settings: Settings = ctx["settings"]
    jobs = PdfChapterJob.get_pymongo_collection()
    db = jobs.database
    job = await jobs.find_one({"job_id": job_id}, {"_id": 0, "file_id": 1})
    if job is None:
        return "gone"
    file_doc = await db[f"{BUCKET}.files"].find_one({"_id": job["file_id"]}, {"filename": 1})
    filename = (file_doc or {}).get("filename") or "document.pdf"
    claimed = await claim(jobs, job_id, f"Downloading PDF: {filename}")
    if claimed is None:
        return "not pending"  # another worker has it, or it finished or was cancelled
    log.info("job %s: processing %s (attempt %d)", job_id, filename, claimed["attempts"])
    heartbeat = asyncio.create_task(_heartbeat(jobs, job_id, settings.heartbeat_interval_s))
    metrics.RUNNING.inc()
    started = time.monotonic()
    outcome = "released"
    try:
        outcome = await _run(settings, ctx["render_pool"], claimed, filename)
        return outcome
    except ExtractionError as exc:
        await fail(jobs, job_id, exc.reason, exc.code)
        log.info("job %s: failed: %s", job_id, exc.reason, extra={"error_code": exc.code})
        outcome = "failed"
        return f"failed: {exc.code}"
    except Stopped:
        await chapter.discard(job_id)
        log.info("job %s: stopped, no longer processing (cancelled)", job_id)
        outcome = "cancelled"
        return "cancelled"
    except asyncio.CancelledError:
        # The worker is shutting down: hand the job back so it resumes elsewhere, now.
        with contextlib.suppress(Exception):
            await asyncio.shield(release(jobs, job_id))
        raise
    except PoolClosed:
        with contextlib.suppress(Exception):  # stopping too, its render processes first
            await release(jobs, job_id)
        return "released"
    except Exception:
        log.exception("job %s: unexpected error", job_id)
        await fail(jobs, job_id, "Internal error while processing the PDF", "INTERNAL")
        outcome = "failed"
        return "failed: INTERNAL"
    finally:
        metrics.RUNNING.dec()
        metrics.JOBS_FINISHED.labels(outcome=outcome).inc()
        metrics.JOB_SECONDS.observe(time.monotonic() - started)
        heartbeat.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await heartbeat


async def _heartbeat(jobs: Any, job_id: str, interval_s: float) -> None:
    """Keep the claim fresh while the job runs; the sweeper releases jobs whose beat stops."""
    alive = True
    while alive:
        await asyncio.sleep(interval_s)
        alive = await beat(jobs, job_id)
        metrics.HEARTBEAT.set_to_current_time()


@dataclass
class _Extraction:
    total: int = 0
    done: int = 0
    title: str | None = None


async def _run(settings: Settings, pool: RenderPool, job: dict[str, Any], filename: str) -> str:
    jobs = PdfChapterJob.get_pymongo_collection()
    job_id = job["job_id"]
    writer = ProgressWriter(jobs, job_id, interval_s=settings.progress_interval_s)
    chapter_id = chapter.chapter_id_for(job_id)
    with tempfile.TemporaryDirectory(prefix="pcj-") as workdir:
        path = os.path.join(workdir, "source.pdf")
        await _download(jobs.database, job["file_id"], path)
        now = utcnow()
        downloaded = {
            **stage_fields(Stage.download_pdf, StageStatus.completed, now, 100),
            **stage_fields(Stage.extract_pages, StageStatus.processing, now, 0),
        }
        if not await advance(jobs, job_id, 10, f"Downloading PDF: {filename}", downloaded):
            raise Stopped
        state = _Extraction()

        async def on_meta(total: int, title: str | None) -> bool:
            state.total, state.title = total, title
            return await writer.report(
                30, f"Processed 0/{total} pages...", {"pages_total": total}, force=True
            )

        async def on_pages(batch: list[RenderedPage]) -> bool:
            total = state.total
            await chapter.write_pages(
                job, chapter_id, filename, total, [(page.index, page.text) for page in batch]
            )
            # Every MuPDF warning counts: a damaged page often says "error" nowhere.
            errors = [
                {"page_number": page.index + 1, "error": page.error or "; ".join(page.warnings)}
                for page in batch
                if page.error or page.warnings
            ]
            if errors:
                await record_page_errors(jobs, job_id, errors)
            state.done = done = state.done + len(batch)
            metrics.PAGES.inc(len(batch))
            return await writer.report(
                extraction_progress(done, total),
                f"Processed {done}/{total} pages...",
                {
                    "pages_processed": done,
                    **stage_percent(Stage.extract_pages, percent(done, total)),
                },
            )

        try:
            async with asyncio.timeout(settings.job_time_limit_s) as deadline:
                info = await pool.open(path)
                if not await on_meta(info.page_count, info.title):
                    raise Stopped
                # Text only until page images are stored (issue 11 wires in the page store).
                options = render_options(settings, images=False)
                if not await _render(pool, path, info.page_count, options, on_pages):
                    raise Stopped
        except TimeoutError:
            if not deadline.expired():
                raise
            limit = settings.job_time_limit_s
            raise ExtractionError(
                "TIMEOUT", f"PDF processing timed out after {limit:g} s"
            ) from None
    if not await writer.flush():
        raise Stopped
    total = state.total
    now = utcnow()
    extracted = {
        "pages_total": total,
        "pages_processed": total,
        **stage_fields(Stage.extract_pages, StageStatus.completed, now, 100),
        **stage_fields(Stage.create_chapter, StageStatus.processing, now, 0),
    }
    if not await advance(
        jobs, job_id, 70, f"Processed {total} pages. Creating chapter...", extracted
    ):
        raise Stopped
    title = chapter.chapter_title(state.title, filename)
    await chapter.create_chapter(job, chapter_id, title, total, filename)
    result = {"chapter_id": chapter_id, "total_pages": total}
    created = stage_fields(Stage.create_chapter, StageStatus.completed, utcnow(), 100)
    message = f"Chapter created successfully with {total} pages"
    if not await complete(jobs, job_id, result, message, created):
        raise Stopped
    log.info("job %s: completed, %d pages", job_id, total)
    return "completed"


async def _render(
    pool: RenderPool,
    path: str,
    total: int,
    options: RenderOptions,
    on_pages: Callable[[list[RenderedPage]], Awaitable[bool]],
) -> bool:
    """Render every page, handing them to ``on_pages`` in batches; False once it says stop."""
    batch: list[RenderedPage] = []
    last_write = time.monotonic()
    async with contextlib.aclosing(pool.render(path, range(total), options)) as pages:
        async for page in pages:
            batch.append(page)
            if len(batch) < BATCH_PAGES and time.monotonic() - last_write < BATCH_SECONDS:
                continue
            if not await on_pages(batch):
                return False
            batch, last_write = [], time.monotonic()
    return not batch or await on_pages(batch)


async def _download(db: Any, file_id: str, path: str) -> None:
    """Stream the PDF from GridFS to a local file, chunk by chunk."""
    grid_out = await open_file(db, file_id)
    if grid_out is None:
        raise FILE_MISSING
    with open(path, "wb") as out:  # noqa: ASYNC230 - local temp file, chunk-sized writes
        while chunk := await grid_out.readchunk():
            out.write(chunk)
