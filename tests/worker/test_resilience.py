"""Nothing stuck, nothing lost: lost doorbells, dead workers, concurrent workers, cancellation."""

from __future__ import annotations

import asyncio
import signal

from pydantic import SecretStr

from devstack.embedded import free_port
from service.store.database import Store
from service.store.doorbell import create_queue
from service.store.page_images import create_page_store
from tests.support.pdfs import memory_bomb_pdf, slow_last_page_pdf, text_pdf
from tests.support.worker_process import spawn_worker
from worker.run.task import process_pdf_chapter
from worker.sweeper import sweep
from worker.wiring import create_render_pool

JOBS = "/api/v1/books/jobs"


async def _job(collections, job_id):
    return await collections.jobs.find_one({"job_id": job_id})


async def _storing_pages(collections, job_id):
    """Whether the job is processing with pages stored (past 30 %, the first page's progress)."""
    doc = await _job(collections, job_id)
    return doc["status"] == "processing" and doc["progress"] > 30


async def _sweep(store, settings, **overrides):
    queue = create_queue(settings)
    try:
        ctx = {"settings": settings.model_copy(update=overrides), "redis": queue, "store": store}
        return await sweep(ctx)
    finally:
        await queue.aclose(close_connection_pool=True)


async def _wait_for(predicate, seconds=30.0):
    for _ in range(int(seconds / 0.1)):
        if await predicate():
            return True
        await asyncio.sleep(0.1)
    return False


async def test_job_created_while_redis_was_down_runs_once_it_is_back(
    store, collections, settings, other_app, cert_server, upload, run_worker
):
    file_id = (await upload(text_pdf(2))).json()["file_id"]
    no_redis = settings.model_copy(update={"redis_url": "redis://127.0.0.1:1/0"})
    headers = {"Authorization": f"Bearer {cert_server.token('alice')}"}
    async with other_app(no_redis) as client:
        created = await client.post(
            JOBS, json={"book_id": "b", "file_id": file_id}, headers=headers
        )

    swept = await _sweep(store, settings, pending_grace_s=0)
    await run_worker()

    assert created.status_code == 202
    assert swept["rung"] == 1
    assert (await _job(collections, created.json()["job_id"]))["status"] == "completed"


async def test_redis_flushed_while_jobs_pending_they_still_run(
    store, collections, submit, queue, settings, run_worker
):
    jobs = [await submit(text_pdf(2)) for _ in range(3)]
    await queue.flushall()

    swept = await _sweep(store, settings, pending_grace_s=0)
    await run_worker()

    assert swept["rung"] == 3
    for job in jobs:
        stored = await _job(collections, job["job_id"])
        assert (stored["status"], stored["attempts"]) == ("completed", 1)


async def test_sweep_does_not_ring_a_job_within_its_grace(store, collections, submit, settings):
    await submit(text_pdf(1))

    swept = await _sweep(store, settings, pending_grace_s=60)

    assert swept == {"released": 0, "lost": 0, "rung": 0, "discarded": 0, "reindexed": 0}


async def test_two_workers_twenty_jobs_each_processed_exactly_once(collections, submit, run_worker):
    # Four users: one may have only MAX_ACTIVE_JOBS_PER_USER (10) jobs pending at once.
    jobs = [await submit(text_pdf(3), user_id=f"user-{n % 4}") for n in range(20)]

    await asyncio.gather(run_worker(), run_worker())

    page_docs = collections.pages
    for job in jobs:
        stored = await _job(collections, job["job_id"])
        assert stored["status"] == "completed"
        assert stored["attempts"] == 1
        assert await page_docs.count_documents({"job_id": job["job_id"]}) == 3


async def test_worker_killed_mid_job_is_resumed_without_duplicate_pages(
    store, collections, app, settings, submit
):
    pages = 3000
    # Text (many pages fast), and a slow last page: the job cannot complete before the kill.
    job = await submit(slow_last_page_pdf(pages), content_mode="pdf_file")
    worker = spawn_worker(settings, JOB_MEMORY_LIMIT_MB="4096")
    try:
        assert await _wait_for(lambda: _storing_pages(collections, job["job_id"])), (
            "the worker never stored a page"
        )
        # Stopped first: it writes nothing more, so the job read now is the one the kill leaves.
        worker.send_signal(signal.SIGSTOP)
        stuck = await _job(collections, job["job_id"])
        assert stuck["status"] == "processing", "the job ended before its worker was killed"
        worker.send_signal(signal.SIGKILL)
        worker.wait(10)
    finally:
        if worker.poll() is None:
            worker.kill()

    swept = await _sweep(store, settings, stale_after_s=0)
    # Another worker takes the released job. (Called directly: arq itself keeps the dead
    # worker's entry "in progress" until its own timeout, which a burst worker would wait out.)
    resumed = settings.model_copy(update={"job_memory_limit_mb": 4096})
    async with create_render_pool(resumed) as pool:
        outcome = await process_pdf_chapter(
            {
                "settings": resumed,
                "render_pool": pool,
                "store": app.state.services.store,
            },
            job["job_id"],
        )

    done = await _job(collections, job["job_id"])
    page_docs = collections.pages
    assert swept["released"] == 1
    assert outcome == "completed"
    assert (done["status"], done["attempts"]) == ("completed", 2)
    assert done["result"]["total_pages"] == pages
    assert await page_docs.count_documents({"job_id": job["job_id"]}) == pages


async def test_job_whose_worker_keeps_dying_fails_as_worker_lost(
    store, collections, job_factory, settings, client, auth_headers
):
    from service.domain.job import JobStatus, utcnow

    job = await job_factory(
        status=JobStatus.processing, progress=45, attempts=3, lost_runs=2, heartbeat_at=utcnow()
    )

    swept = await _sweep(store, settings, stale_after_s=0, job_max_attempts=3)

    body = (await client.get(f"{JOBS}/{job.job_id}", headers=auth_headers("alice"))).json()
    assert swept["lost"] == 1
    assert body["status"] == "failed"
    assert body["error"] == "worker lost"
    assert body["progress"] == 45


async def test_cancel_while_processing_stops_at_the_next_page(
    collections, client, auth_headers, submit, run_worker
):
    # Over BATCH_PAGES light pages, so some are stored, then a slow one the cancel lands in.
    job = await submit(slow_last_page_pdf(100))
    slow = asyncio.create_task(run_worker(job_memory_limit_mb=4096))

    async def storing():
        doc = await _job(collections, job["job_id"])
        return doc["status"] == "processing" and doc["progress"] > 30

    assert await _wait_for(storing, 60), "the worker never stored a page of the job"
    cancelled = await client.post(f"{JOBS}/{job['job_id']}/cancel", headers=auth_headers("alice"))
    await slow

    stored = await _job(collections, job["job_id"])
    assert cancelled.status_code == 200, cancelled.text
    assert stored["status"] == "cancelled"
    assert stored["cancelled_at"] is not None
    assert await collections.pages.count_documents({"job_id": job["job_id"]}) == 0


async def test_worker_stopped_with_sigterm_hands_its_job_back_at_once(
    collections, app, settings, submit
):
    job = await submit(memory_bomb_pdf(10))  # one page that keeps MuPDF busy for seconds
    worker = spawn_worker(settings, JOB_MEMORY_LIMIT_MB="4096")
    try:

        async def midway():
            doc = await _job(collections, job["job_id"])
            return doc["status"] == "processing" and doc["progress"] >= 30  # extracting

        assert await _wait_for(midway), "the worker never got going"
        worker.send_signal(signal.SIGTERM)
        exit_code = worker.wait(30)
    finally:
        if worker.poll() is None:
            worker.kill()
    handed_back = await _job(collections, job["job_id"])

    resumed = settings.model_copy(update={"job_memory_limit_mb": 4096})
    async with create_render_pool(resumed) as pool:
        outcome = await process_pdf_chapter(
            {
                "settings": resumed,
                "render_pool": pool,
                "store": app.state.services.store,
            },
            job["job_id"],
        )

    assert exit_code == 0
    assert handed_back["status"] == "pending"  # no waiting for a stale heartbeat
    assert outcome == "completed"
    done = await _job(collections, job["job_id"])
    assert (done["status"], done["attempts"]) == ("completed", 2)
    assert await collections.pages.count_documents({"job_id": job["job_id"]}) == 1


async def test_a_worker_paused_past_its_lease_destroys_nothing_when_it_wakes(
    collections, app, settings, submit, tmp_path
):
    """Issue 10's data loss: worker A stalls (SIGSTOP) past STALE_AFTER_S while worker B is free.
    The sweeper hands the job to B, which completes it; then A wakes up mid-job. A's writes carry
    a lease that is gone: it stops, and the chapter and every page are still there."""
    pages = 3000
    # Text (many pages fast), and a slow last page: the job cannot complete before the pause.
    job = await submit(slow_last_page_pdf(pages), content_mode="pdf_file")
    fast = {
        "STALE_AFTER_S": "2",
        "HEARTBEAT_INTERVAL_S": "0.5",
        "SWEEP_INTERVAL_S": "1",
        "JOB_MEMORY_LIMIT_MB": "4096",
    }
    log_a = tmp_path / "worker-a.log"
    log_file = log_a.open("wb")
    worker_a = spawn_worker(settings, log=log_file, **fast)
    worker_b = None
    try:
        assert await _wait_for(lambda: _storing_pages(collections, job["job_id"])), (
            "worker A never stored a page"
        )
        worker_a.send_signal(signal.SIGSTOP)
        paused = await _job(
            collections, job["job_id"]
        )  # read once A is frozen: nothing changes it now
        assert paused["status"] == "processing", "the job ended before worker A was paused"
        worker_b = spawn_worker(settings, **fast)

        async def completed_by_b():
            doc = await _job(collections, job["job_id"])
            return doc["status"] == "completed"

        assert await _wait_for(completed_by_b, 60), "worker B never completed the job"
        worker_a.send_signal(signal.SIGCONT)

        async def a_gave_up():
            return b": stopped: " in log_a.read_bytes()

        assert await _wait_for(a_gave_up, 30), "worker A never noticed it lost the job"
    finally:
        for worker in (worker_a, worker_b):
            if worker is not None and worker.poll() is None:
                worker.send_signal(signal.SIGCONT)
                worker.kill()
                worker.wait(10)
        log_file.close()

    done = await _job(collections, job["job_id"])
    chapter_id = done["result"]["chapter_id"]
    chapters = collections.chapters
    page_docs = collections.pages
    assert (done["status"], done["attempts"]) == ("completed", 2)
    assert done["lease_id"] != paused["lease_id"]
    assert await chapters.count_documents({"chapter_id": chapter_id}) == 1
    assert await page_docs.count_documents({"job_id": job["job_id"]}) == pages
    assert await page_docs.count_documents({"chapter_id": chapter_id}) == pages


async def test_time_limit_spent_waiting_for_the_page_store_hands_the_job_back(
    collections, app, settings, submit
):
    """The page store unreachable while a job renders (an S3 endpoint where nothing listens):
    its puts wait, and when the time limit runs out the job goes back to the queue, as for a
    MongoDB outage, instead of failing as "timed out" by no fault of the PDF."""
    job = await submit(text_pdf(3))  # pdf_pages: every page has images to store
    away = settings.model_copy(
        update={
            "page_store": "s3",
            "s3_endpoint_url": f"http://127.0.0.1:{free_port()}",
            "s3_bucket": "pages",
            "s3_access_key_id": "key",
            "s3_secret_access_key": SecretStr("secret"),
            "job_time_limit_s": 3,
        }
    )
    store = create_page_store(away, app.state.services.store.collections.db)
    try:
        async with create_render_pool(away) as pool:
            outcome = await process_pdf_chapter(
                {
                    "settings": away,
                    "render_pool": pool,
                    "store": Store.of(app.state.services.store.client, away, images=store),
                    "redis": app.state.services.queue,
                },
                job["job_id"],
            )
    finally:
        await store.aclose()

    handed_back = await _job(collections, job["job_id"])
    assert outcome == "released"
    assert handed_back["status"] == "pending"
    assert handed_back.get("error") is None
    assert handed_back["attempts"] == 1
