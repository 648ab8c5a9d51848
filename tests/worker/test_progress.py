"""worker/run/lease.py: a run's throttled progress writes and the lease they carry."""

from __future__ import annotations

import json
import logging

import pytest

from service.domain.job import JobStatus
from service.logs import JsonFormatter, current_job_id
from worker.run.lease import LeaseLost, ProgressWriter, Run

LEASE = "lease-1"


@pytest.fixture
def jobs(collections, app):
    return collections.jobs


async def test_progress_writer_throttles_and_always_writes_the_last(store, jobs, job_factory):
    job = await job_factory(status=JobStatus.processing, progress=30, lease_id=LEASE)
    now = [0.0]
    writer = ProgressWriter(
        Run(job.job_id, LEASE, store.jobs), interval_s=0.25, clock=lambda: now[0]
    )

    for page in range(1, 101):  # 100 pages within 0.099 s of clock time
        now[0] = page / 1000
        await writer.report(30 + page * 40 // 100, f"Processed {page}/100 pages...")
    await writer.flush()

    doc = await jobs.find_one({"job_id": job.job_id})
    assert writer.writes == 2  # the first report, then the final flush
    assert doc["progress"] == 70
    assert doc["message"] == "Processed 100/100 pages..."
    assert doc["version"] == 3


async def test_page_errors_are_written_at_once_whatever_the_throttle(store, jobs, job_factory):
    job = await job_factory(status=JobStatus.processing, progress=30, lease_id=LEASE)
    writer = ProgressWriter(Run(job.job_id, LEASE, store.jobs), interval_s=3600, clock=lambda: 0.0)
    await writer.report(31, "Processed 1/10 pages...")

    await writer.report(
        32, "Processed 2/10 pages...", page_errors=[{"page_number": 2, "error": "x"}]
    )

    doc = await jobs.find_one({"job_id": job.job_id})
    assert writer.writes == 2
    assert doc["page_errors"][0]["page_number"] == 2
    assert doc["progress"] == 32


async def test_a_cancelled_run_learns_it_at_its_next_write(store, jobs, job_factory):
    job = await job_factory(status=JobStatus.processing, progress=30, lease_id=LEASE)
    writer = ProgressWriter(Run(job.job_id, LEASE, store.jobs))
    await jobs.update_one({"job_id": job.job_id}, {"$set": {"status": "cancelled"}})

    with pytest.raises(LeaseLost):
        await writer.report(40, "Processed 3/10 pages...", force=True)


async def test_a_run_whose_job_was_taken_over_writes_nothing(store, jobs, job_factory):
    job = await job_factory(status=JobStatus.processing, progress=30, lease_id="another-run")
    run = Run(job.job_id, LEASE, store.jobs)
    before = await jobs.find_one({"job_id": job.job_id})

    for attempt in (run.beat, lambda: run.advance(60, "m"), run.release,
                    lambda: run.complete({"chapter_id": "c", "total_pages": 1}, "m"),
                    lambda: run.fail("bad", "PDF_CORRUPT")):  # fmt: skip
        with pytest.raises(LeaseLost):
            await attempt()

    assert await jobs.find_one({"job_id": job.job_id}) == before


def test_log_lines_of_a_job_carry_its_id():
    token = current_job_id.set("job-42")
    try:
        line = JsonFormatter().format(
            logging.LogRecord("worker.run.task", logging.INFO, __file__, 1, "page %d", (3,), None)
        )
    finally:
        current_job_id.reset(token)

    assert json.loads(line)["job_id"] == "job-42"
    assert json.loads(line)["message"] == "page 3"
