"""worker/progress.py: every job-state write is atomic and guarded, on a real mongod."""

from __future__ import annotations

import asyncio

import pytest

from service.models import JobStatus, PdfChapterJob
from worker.progress import (
    ProgressWriter,
    advance,
    claim,
    complete,
    fail,
    record_page_errors,
    release,
)


@pytest.fixture
def jobs(app):
    return PdfChapterJob.get_pymongo_collection()


async def _load(jobs, job_id):
    return await jobs.find_one({"job_id": job_id})


async def test_claim_moves_pending_to_processing_once(jobs, job_factory):
    job = await job_factory()

    first = await claim(jobs, job.job_id, "Downloading PDF: a.pdf")
    second = await claim(jobs, job.job_id, "Downloading PDF: a.pdf")

    assert first["status"] == "processing"
    assert first["attempts"] == 1
    assert first["version"] == 2
    assert first["started_at"] is not None
    assert second is None


async def test_concurrent_claims_have_exactly_one_winner(jobs, job_factory):
    job = await job_factory()

    results = await asyncio.gather(*(claim(jobs, job.job_id, "m") for _ in range(20)))

    assert sum(result is not None for result in results) == 1
    assert (await _load(jobs, job.job_id))["attempts"] == 1


async def test_advance_never_moves_progress_backwards(jobs, job_factory):
    job = await job_factory(status=JobStatus.processing, progress=50)

    still_ours = await advance(jobs, job.job_id, 40, "Processed 1/10 pages...")

    doc = await _load(jobs, job.job_id)
    assert still_ours is True
    assert doc["progress"] == 50
    assert doc["version"] == 1


async def test_advance_on_a_cancelled_job_writes_nothing_and_says_stop(jobs, job_factory):
    job = await job_factory(status=JobStatus.cancelled, progress=30)

    still_ours = await advance(jobs, job.job_id, 40, "Processed 4/10 pages...")

    doc = await _load(jobs, job.job_id)
    assert still_ours is False
    assert (doc["status"], doc["progress"], doc["version"]) == ("cancelled", 30, 1)


async def test_complete_sets_result_and_completed_at(jobs, job_factory):
    job = await job_factory(status=JobStatus.processing, progress=70)

    done = await complete(
        jobs,
        job.job_id,
        {"chapter_id": "c1", "total_pages": 3},
        "Chapter created successfully with 3 pages",
    )

    doc = await _load(jobs, job.job_id)
    assert done is True
    assert doc["status"] == "completed"
    assert doc["progress"] == 100
    assert doc["result"] == {"chapter_id": "c1", "total_pages": 3}
    assert doc["completed_at"] == doc["updated_at"]
    assert doc["version"] == 2


async def test_complete_does_not_resurrect_a_failed_job(jobs, job_factory):
    job = await job_factory(status=JobStatus.failed, progress=35, error="worker lost")

    done = await complete(jobs, job.job_id, {"chapter_id": "c1", "total_pages": 3}, "m")

    doc = await _load(jobs, job.job_id)
    assert done is False
    assert doc["status"] == "failed"
    assert "result" not in doc or doc["result"] is None


async def test_fail_keeps_progress_and_records_the_reason(jobs, job_factory):
    job = await job_factory(status=JobStatus.processing, progress=35)

    failed = await fail(jobs, job.job_id, "Out of memory")

    doc = await _load(jobs, job.job_id)
    assert failed is True
    assert doc["status"] == "failed"
    assert doc["progress"] == 35
    assert doc["message"] == "PDF processing failed: Out of memory"
    assert doc["error"] == "Out of memory"
    assert doc["failed_at"] == doc["updated_at"]


async def test_fail_leaves_a_completed_job_alone(jobs, job_factory):
    job = await job_factory(status=JobStatus.completed, progress=100)

    failed = await fail(jobs, job.job_id, "late error")

    assert failed is False
    assert (await _load(jobs, job.job_id))["status"] == "completed"


async def test_progress_writer_throttles_and_always_writes_the_last(jobs, job_factory):
    job = await job_factory(status=JobStatus.processing, progress=30)
    now = [0.0]
    writer = ProgressWriter(jobs, job.job_id, interval_s=0.25, clock=lambda: now[0])

    for page in range(1, 101):  # 100 pages within 0.099 s of clock time
        now[0] = page / 1000
        await writer.report(30 + page * 40 // 100, f"Processed {page}/100 pages...")
    await writer.flush()

    doc = await _load(jobs, job.job_id)
    assert writer.writes == 2  # the first report, then the final flush
    assert doc["progress"] == 70
    assert doc["message"] == "Processed 100/100 pages..."
    assert doc["version"] == 3


async def test_progress_writer_reports_a_cancellation(jobs, job_factory):
    job = await job_factory(status=JobStatus.processing, progress=30)
    writer = ProgressWriter(jobs, job.job_id)
    await jobs.update_one({"job_id": job.job_id}, {"$set": {"status": "cancelled"}})

    alive = await writer.report(40, "Processed 3/10 pages...", force=True)

    assert alive is False


def test_log_lines_of_a_job_carry_its_id():
    import json
    import logging

    from service.logs import JsonFormatter, current_job_id

    token = current_job_id.set("job-42")
    try:
        line = JsonFormatter().format(
            logging.LogRecord("worker.jobs", logging.INFO, __file__, 1, "page %d", (3,), None)
        )
    finally:
        current_job_id.reset(token)

    assert json.loads(line)["job_id"] == "job-42"
    assert json.loads(line)["message"] == "page 3"


def _stage_statuses(doc):
    return {name: state["status"] for name, state in doc["stages"].items()}


async def test_claim_starts_the_stages_over_with_the_download(jobs, job_factory):
    job = await job_factory()

    claimed = await claim(jobs, job.job_id, "m")

    assert _stage_statuses(claimed) == {
        "download_pdf": "processing", "extract_pages": "pending", "create_chapter": "pending",
    }  # fmt: skip
    assert claimed["stages"]["download_pdf"]["started_at"] == claimed["started_at"]


async def test_fail_marks_the_running_stage_failed_and_later_ones_skipped(jobs, job_factory):
    job = await job_factory()
    await claim(jobs, job.job_id, "m")
    await advance(jobs, job.job_id, 10, "m", {"stages.download_pdf.status": "completed"})
    await advance(jobs, job.job_id, 20, "m", {"stages.extract_pages.status": "processing"})

    await fail(jobs, job.job_id, "$status is not a field path", "PDF_CORRUPT")

    doc = await _load(jobs, job.job_id)
    assert _stage_statuses(doc) == {
        "download_pdf": "completed", "extract_pages": "failed", "create_chapter": "skipped",
    }  # fmt: skip
    assert doc["stages"]["extract_pages"]["finished_at"] == doc["failed_at"]
    # Strings are stored as given, never read as field paths of the update pipeline.
    assert doc["error"] == "$status is not a field path"
    assert doc["message"] == "PDF processing failed: $status is not a field path"
    assert doc["error_code"] == "PDF_CORRUPT"


async def test_release_puts_the_running_stage_back_to_pending(jobs, job_factory):
    job = await job_factory()
    await claim(jobs, job.job_id, "m")

    released = await release(jobs, job.job_id)

    doc = await _load(jobs, job.job_id)
    assert released is True
    assert doc["status"] == "pending"
    assert set(_stage_statuses(doc).values()) == {"pending"}


async def test_page_errors_are_stamped_and_not_listed_twice(jobs, job_factory):
    job = await job_factory()
    await claim(jobs, job.job_id, "m")

    await record_page_errors(jobs, job.job_id, [{"page_number": 2, "error": "bad font"}])
    await record_page_errors(
        jobs,
        job.job_id,
        [{"page_number": 2, "error": "bad font"}, {"page_number": 5, "error": "bad image"}],
    )

    doc = await _load(jobs, job.job_id)
    assert [(e["page_number"], e["error"]) for e in doc["page_errors"]] == [
        (2, "bad font"), (5, "bad image"),
    ]  # fmt: skip
    assert all(e["timestamp"] is not None for e in doc["page_errors"])
    assert doc["version"] == 4


async def test_resumed_job_records_its_stages_while_progress_stays_ahead(jobs, job_factory):
    job = await job_factory()
    await claim(jobs, job.job_id, "m")
    await advance(jobs, job.job_id, 55, "Processed 50/100 pages...", {"pages_processed": 50})
    await release(jobs, job.job_id)
    await claim(jobs, job.job_id, "Downloading PDF: a.pdf")

    alive = await advance(
        jobs,
        job.job_id,
        10,
        "Downloading PDF: a.pdf",
        {"stages.download_pdf.status": "completed", "stages.download_pdf.percent": 100},
    )

    doc = await _load(jobs, job.job_id)
    assert alive is True
    assert doc["progress"] == 55  # never backwards for the polling client
    assert doc["message"] == "Processed 50/100 pages..."  # and its message with it
    assert doc["stages"]["download_pdf"]["status"] == "completed"  # this attempt's stage
    assert doc["stages"]["download_pdf"]["percent"] == 100
    assert doc["attempts"] == 2

    await advance(jobs, job.job_id, 60, "Processed 60/100 pages...")

    doc = await _load(jobs, job.job_id)
    assert (doc["progress"], doc["message"]) == (60, "Processed 60/100 pages...")


async def test_ending_a_job_stored_before_stages_existed_fills_them_in(jobs, job_factory):
    job = await job_factory(status=JobStatus.processing)
    await jobs.update_one({"job_id": job.job_id}, {"$unset": {"stages": ""}})

    await fail(jobs, job.job_id, "worker lost", "WORKER_LOST")

    doc = await _load(jobs, job.job_id)
    assert _stage_statuses(doc) == {
        "download_pdf": "skipped", "extract_pages": "skipped", "create_chapter": "skipped",
    }  # fmt: skip
