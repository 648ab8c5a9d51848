"""The worker outlives its dependencies: Redis killed and restarted empty under it (it keeps its
running job, reconnects, takes new jobs, in one process), and MongoDB absent when it starts."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import signal
import subprocess
import sys

import httpx

from devstack.embedded import free_port, remove_tree, start_mongod, start_redis
from service.store.doorbell import create_queue, ring
from tests.conftest import REPO_ROOT
from tests.support.pdfs import memory_bomb_pdf, text_pdf
from worker import metrics
from worker.consumer import SHUT_DOWN, STARTED
from worker.wiring import create_worker


async def _job(collections, job_id):
    return await collections.jobs.find_one({"job_id": job_id})


async def _until(predicate, seconds=60.0):
    """Poll ``predicate`` (plain or async) until it is true; False if it never was."""
    for _ in range(int(seconds / 0.05)):
        result = predicate()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return True
        await asyncio.sleep(0.05)
    return False


def _redis_up() -> float:
    return metrics.DEPENDENCY_UP.labels(dependency="redis")._value.get()


async def test_worker_lives_through_redis_killed_and_restarted_empty(
    collections, app, settings, submit, queue, tmp_path
):
    redis = start_redis(tmp_path, free_port(), persistent=False)
    # One job slot, and the running job holds it all along: arq itself then asks Redis nothing.
    own = settings.model_copy(
        update={
            "redis_url": redis.url,
            "progress_interval_s": 0,
            "worker_concurrency": 1,
            "job_memory_limit_mb": 4096,
        }
    )
    running = await submit(memory_bomb_pdf(10), content_mode="pdf_file")  # seconds on one page
    after = await submit(text_pdf(3), content_mode="pdf_file")
    await queue.flushall()  # the session's Redis: these jobs are rung on the worker's own
    doorbell = create_queue(own)
    await ring(doorbell, running["job_id"])
    worker = create_worker(
        own, handle_signals=False, ctx={"mongo_client": app.state.services.store.client}
    )
    main = asyncio.create_task(worker.main())
    renderers: list[int] = []
    try:

        async def midway():
            doc = await _job(collections, running["job_id"])
            return doc["status"] == "processing" and doc["progress"] >= 30  # extracting

        assert await _until(midway), "the job never got going"
        # The job's render processes are paused through the outage, so it is still running
        # whatever this machine's speed; the worker process itself is not.
        renderers = [pid for pid in worker.ctx["render_pool"].pids if pid is not None]
        for pid in renderers:
            os.kill(pid, signal.SIGSTOP)
        redis.process.send_signal(signal.SIGKILL)
        redis.process.wait(10)
        assert await _until(lambda: _redis_up() == 0, 10), "the outage was not seen"
        outage_seen = _redis_up()
        still_running = (await _job(collections, running["job_id"]))["status"] == "processing"
        worker_alive = not main.done()
        redis = await asyncio.to_thread(start_redis, tmp_path, redis.port, persistent=False)
        assert await _until(lambda: _redis_up() == 1, 10), "the reconnect was not seen"
        for pid in renderers:
            os.kill(pid, signal.SIGCONT)
        await ring(doorbell, after["job_id"])  # a new job, on the Redis that came back empty

        async def both_completed():
            docs = [await _job(collections, job["job_id"]) for job in (running, after)]
            return all(doc["status"] == "completed" for doc in docs)

        completed = await _until(both_completed)
    finally:
        for pid in renderers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        main.cancel()
        await worker.close()
        await doorbell.aclose(close_connection_pool=True)
        redis.stop()

    page_docs = collections.pages
    assert outage_seen == 0
    assert still_running  # seen while the only slot was busy, not when it freed up
    assert worker_alive
    assert completed
    assert (await _job(collections, running["job_id"]))["attempts"] == 1  # kept its job all along
    assert await page_docs.count_documents({"job_id": running["job_id"]}) == 1
    assert await page_docs.count_documents({"job_id": after["job_id"]}) == 3


def _scrape(port: int, series: str) -> float | None:
    try:
        body = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
    except httpx.TransportError:
        return None
    for line in body.splitlines():
        if line.startswith(series + " "):
            return float(line.split()[1])
    return None


async def test_worker_started_during_a_mongodb_outage_waits_for_it(settings, tmp_path):
    mongo_port, metrics_port = free_port(), free_port()
    up = 'pcj_worker_dependency_up{dependency="mongodb"}'
    worker = subprocess.Popen(
        [sys.executable, "-m", "worker"],
        cwd=REPO_ROOT,
        env={
            **os.environ,
            "MONGODB_URL": f"mongodb://127.0.0.1:{mongo_port}/?directConnection=true",
            "MONGODB_STARTUP_WAIT_S": "1",  # it gives up on one connect, not on MongoDB
            "MONGODB_TIMEOUT_MS": "300",
            "REDIS_URL": settings.redis_url,
            "WORKER_METRICS_PORT": str(metrics_port),
        },
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    mongod = None
    try:
        assert await _until(lambda: _scrape(metrics_port, up) == 0, 30), "no outage reported"
        await asyncio.sleep(2)  # well past MONGODB_STARTUP_WAIT_S
        alive_during_outage = worker.poll() is None
        mongod = await asyncio.to_thread(start_mongod, tmp_path / "late-mongod", mongo_port)
        reconnected = await _until(lambda: _scrape(metrics_port, up) == 1, 60)
        alive_after = worker.poll() is None
    finally:
        worker.terminate()
        worker.wait(30)
        if mongod is not None:
            mongod.stop()
        remove_tree(tmp_path / "late-mongod")

    assert alive_during_outage
    assert reconnected
    assert alive_after


async def test_close_with_a_job_cancelled_before_it_started_still_shuts_down(app, settings, queue):
    worker = create_worker(
        settings, handle_signals=False, ctx={"mongo_client": app.state.services.store.client}
    )
    main = asyncio.create_task(worker.main())
    assert await _until(lambda: worker.ctx.get(STARTED)), "the worker never started"
    pool = worker.ctx["render_pool"]
    renderers = [pid for pid in pool.pids if pid is not None]
    # A job arq took just as the stop signal came, and cancelled before it ever ran.
    never_ran = asyncio.create_task(asyncio.sleep(0))
    never_ran.cancel()
    worker.tasks["taken-at-the-signal"] = never_ran

    main.cancel()
    await worker.close()

    assert worker.ctx.get(SHUT_DOWN) is True  # on_shutdown ran: arq's close skipped it
    assert renderers
    assert not [pid for pid in renderers if _alive(pid)], "render processes outlived the worker"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
