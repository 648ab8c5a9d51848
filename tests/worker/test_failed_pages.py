"""A failed job keeps no pages (issue 13, item 4): the worker's failure path and the sweeper's
"worker lost" both remove the pages earlier runs wrote."""

from __future__ import annotations

from service.domain.job import JobStatus, utcnow
from service.store import chapters
from service.store.documents import DocumentChunk, PdfChapterJob
from service.store.doorbell import create_queue
from service.store.page_images import create_page_store
from tests.pdfs import encrypted_pdf, text_pdf
from worker.sweeper import sweep


async def _pages(job_id):
    return await DocumentChunk.get_pymongo_collection().count_documents({"job_id": job_id})


async def _written_earlier(job_id, pages=3):
    """Pages an earlier run of the job wrote before its worker died."""
    job = await PdfChapterJob.get_pymongo_collection().find_one({"job_id": job_id})
    batch = [chapters.StoredPage(index, f"page {index}") for index in range(pages)]
    await chapters.write_pages(job, "chapter-1", "f.pdf", pages, batch)


async def test_job_that_fails_removes_the_pages_it_wrote(submit, run_worker):
    bad = await submit(encrypted_pdf())
    good = await submit(text_pdf(2))
    await _written_earlier(bad["job_id"])

    await run_worker()

    failed = await PdfChapterJob.get_pymongo_collection().find_one({"job_id": bad["job_id"]})
    assert failed["status"] == "failed"
    assert await _pages(bad["job_id"]) == 0
    assert await _pages(good["job_id"]) == 2  # a completed job keeps its own


async def test_job_failed_as_worker_lost_removes_its_pages(settings, job_factory):
    job = await job_factory(
        status=JobStatus.processing, progress=45, attempts=3, heartbeat_at=utcnow()
    )
    await _written_earlier(job.job_id)
    queue = create_queue(settings)
    try:
        update = {"stale_after_s": 0, "job_max_attempts": 3}
        store = create_page_store(settings, PdfChapterJob.get_pymongo_collection().database)
        ctx = {"settings": settings.model_copy(update=update), "redis": queue, "page_store": store}
        swept = await sweep(ctx)
    finally:
        await queue.aclose(close_connection_pool=True)

    assert swept["lost"] == 1
    assert await _pages(job.job_id) == 0
