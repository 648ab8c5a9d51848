"""A failed job keeps no pages: the worker's failure path and the sweeper's
"worker lost" both remove the pages earlier runs wrote."""

from __future__ import annotations

from service.domain.job import JobStatus, utcnow
from service.store.chapters import StoredPage
from service.store.doorbell import create_queue
from tests.support.pdfs import encrypted_pdf, text_pdf
from worker.sweeper import sweep


async def _pages(collections, job_id):
    return await collections.pages.count_documents({"job_id": job_id})


async def _written_earlier(store, job_id, pages=3):
    """Pages an earlier run of the job wrote before its worker died."""
    job = await store.collections.jobs.find_one({"job_id": job_id})
    batch = [StoredPage(index, f"page {index}") for index in range(pages)]
    await store.chapters.write_pages(job, "chapter-1", "f.pdf", pages, batch)


async def test_job_that_fails_removes_the_pages_it_wrote(store, collections, submit, run_worker):
    bad = await submit(encrypted_pdf())
    good = await submit(text_pdf(2))
    await _written_earlier(store, bad["job_id"])

    await run_worker()

    failed = await collections.jobs.find_one({"job_id": bad["job_id"]})
    assert failed["status"] == "failed"
    assert await _pages(collections, bad["job_id"]) == 0
    assert await _pages(collections, good["job_id"]) == 2  # a completed job keeps its own


async def test_job_failed_as_worker_lost_removes_its_pages(
    store, collections, settings, job_factory
):
    job = await job_factory(
        status=JobStatus.processing, progress=45, attempts=3, lost_runs=2, heartbeat_at=utcnow()
    )
    await _written_earlier(store, job.job_id)
    queue = create_queue(settings)
    try:
        update = {"stale_after_s": 0, "job_max_attempts": 3}
        ctx = {"settings": settings.model_copy(update=update), "redis": queue, "store": store}
        swept = await sweep(ctx)
    finally:
        await queue.aclose(close_connection_pool=True)

    assert swept["lost"] == 1
    assert await _pages(collections, job.job_id) == 0
