"""The sweeper on its own schedule: its loop, its lock, and what it does after an outage."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

from service.domain.job import JobStatus, utcnow
from service.store import lock
from service.store.documents import PdfChapterJob
from service.store.doorbell import create_queue
from tests.pdfs import text_pdf
from worker.sweeper import SWEEP_LOCK, keep_sweeping, stop_sweeping, sweep

DEAD_REDIS = "redis://127.0.0.1:1/0"


async def _job(job_id):
    return await PdfChapterJob.get_pymongo_collection().find_one({"job_id": job_id})


async def _sweep(settings, *, judge_heartbeats=True, **overrides):
    settings = settings.model_copy(update=overrides)
    queue = create_queue(settings)
    try:
        return await sweep(
            {"settings": settings, "redis": queue}, judge_heartbeats=judge_heartbeats
        )
    finally:
        await queue.aclose(close_connection_pool=True)


async def test_a_forgotten_job_stays_forgotten_while_redis_is_down_then_rings(
    submit, queue, settings
):
    job = await submit(text_pdf(1))
    await queue.flushall()  # its doorbell is lost
    before = (await _job(job["job_id"]))["rung_at"]

    during = await _sweep(settings, pending_grace_s=0, redis_url=DEAD_REDIS)
    unchanged = (await _job(job["job_id"]))["rung_at"]
    after = await _sweep(settings, pending_grace_s=0)

    assert during["rung"] == 0
    assert unchanged == before  # not marked rung: the next sweep rings it
    assert after["rung"] == 1
    assert await queue.zcard("arq:queue") == 1


async def test_stale_heartbeats_wait_until_mongodb_has_been_back_long_enough(job_factory, settings):
    old = utcnow() - timedelta(seconds=120)
    job = await job_factory(
        status=JobStatus.processing, progress=45, attempts=1, heartbeat_at=old, lease_id="l-1"
    )

    just_back = await _sweep(settings, judge_heartbeats=False)
    waiting = (await _job(job.job_id))["status"]
    later = await _sweep(settings)

    assert just_back["released"] == 0
    assert waiting == "processing"
    assert later["released"] == 1
    assert (await _job(job.job_id))["status"] == "pending"


async def test_two_sweeper_loops_ring_a_forgotten_job_under_one_lock(app, settings, submit, queue):
    job = await submit(text_pdf(1))
    await queue.flushall()
    fast = settings.model_copy(update={"sweep_interval_s": 1, "pending_grace_s": 0})
    contexts = [
        {"settings": fast, "redis": create_queue(fast), "mongo": app.state.services.mongo}
        for _ in range(2)
    ]
    loops = [asyncio.create_task(keep_sweeping(ctx)) for ctx in contexts]
    db = app.state.services.mongo.db
    try:
        for _ in range(100):
            if await queue.zcard("arq:queue"):
                break
            await asyncio.sleep(0.1)
        holder = (await db[lock.LOCKS].find_one({"_id": SWEEP_LOCK}))["holder"]
    finally:
        for ctx, loop in zip(contexts, loops, strict=True):
            await stop_sweeping(ctx, loop)
            await ctx["redis"].aclose(close_connection_pool=True)

    assert await queue.zcard("arq:queue") >= 1
    assert (await _job(job["job_id"]))["rung_at"] > job_created_at(job)
    assert holder in {ctx["sweeper_holder"] for ctx in contexts}
    assert all(loop.cancelled() for loop in loops)
    assert await db[lock.LOCKS].count_documents({}) == 0  # given back on the way out


def job_created_at(job):
    return datetime.fromisoformat(job["created_at"].replace("Z", "+00:00"))
