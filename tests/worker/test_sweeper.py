"""The sweeper on its own schedule: its loop, its lock, and what it does after an outage."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

from service.domain.job import JobStatus, utcnow
from service.store.doorbell import create_queue
from tests.support.pdfs import text_pdf
from worker.sweeper import SWEEP_LOCK, keep_sweeping, stop_sweeping, sweep

DEAD_REDIS = "redis://127.0.0.1:1/0"


async def _job(collections, job_id):
    return await collections.jobs.find_one({"job_id": job_id})


async def _sweep(store, settings, *, judge_heartbeats=True, **overrides):
    settings = settings.model_copy(update=overrides)
    queue = create_queue(settings)
    try:
        return await sweep(
            {"settings": settings, "redis": queue, "store": store},
            judge_heartbeats=judge_heartbeats,
        )
    finally:
        await queue.aclose(close_connection_pool=True)


async def test_a_forgotten_job_stays_forgotten_while_redis_is_down_then_rings(
    store, collections, submit, queue, settings
):
    job = await submit(text_pdf(1))
    await queue.flushall()  # its doorbell is lost
    before = (await _job(collections, job["job_id"]))["rung_at"]

    during = await _sweep(store, settings, pending_grace_s=0, redis_url=DEAD_REDIS)
    unchanged = (await _job(collections, job["job_id"]))["rung_at"]
    after = await _sweep(store, settings, pending_grace_s=0)

    assert during["rung"] == 0
    assert unchanged == before  # not marked rung: the next sweep rings it
    assert after["rung"] == 1
    assert await queue.zcard("arq:queue") == 1


async def test_stale_heartbeats_wait_until_mongodb_has_been_back_long_enough(
    store, collections, job_factory, settings
):
    old = utcnow() - timedelta(seconds=120)
    job = await job_factory(
        status=JobStatus.processing, progress=45, attempts=1, heartbeat_at=old, lease_id="l-1"
    )

    just_back = await _sweep(store, settings, judge_heartbeats=False)
    waiting = (await _job(collections, job.job_id))["status"]
    later = await _sweep(store, settings)

    assert just_back["released"] == 0
    assert waiting == "processing"
    assert later["released"] == 1
    assert (await _job(collections, job.job_id))["status"] == "pending"


async def test_two_sweeper_loops_ring_a_forgotten_job_under_one_lock(
    collections, app, settings, submit, queue
):
    job = await submit(text_pdf(1))
    await queue.flushall()
    fast = settings.model_copy(update={"sweep_interval_s": 1, "pending_grace_s": 0})
    contexts = [
        {"settings": fast, "redis": create_queue(fast), "store": app.state.services.store}
        for _ in range(2)
    ]
    loops = [asyncio.create_task(keep_sweeping(ctx)) for ctx in contexts]
    locks = app.state.services.store.collections.locks
    try:
        for _ in range(100):
            if await queue.zcard("arq:queue"):
                break
            await asyncio.sleep(0.1)
        holder = (await locks.find_one({"_id": SWEEP_LOCK}))["holder"]
    finally:
        for ctx, loop in zip(contexts, loops, strict=True):
            await stop_sweeping(ctx, loop)
            await ctx["redis"].aclose(close_connection_pool=True)

    assert await queue.zcard("arq:queue") >= 1
    assert (await _job(collections, job["job_id"]))["rung_at"] > job_created_at(job)
    assert holder in {ctx["sweeper_holder"] for ctx in contexts}
    assert all(loop.cancelled() for loop in loops)
    assert await locks.count_documents({}) == 0  # given back on the way out


def job_created_at(job):
    return datetime.fromisoformat(job["created_at"].replace("Z", "+00:00"))
