"""The sweeper on its own schedule: its loop, its lock, and what it does after an outage; the jobs
of dead workers, doorbells rung once, and what a deleted job's dying run wrote."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

import pytest
from arq.constants import in_progress_key_prefix

from service.domain import lifecycle
from service.domain.job import JobStatus, utcnow
from service.domain.page_keys import chapter_prefix, page_key
from service.store.chapters import StoredPage
from service.store.doorbell import ARQ_IN_PROGRESS_EXTRA_S, create_queue, doorbell_timeout_s
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


# --- Dead workers: their records, not each job's heartbeat -----------------------------------


async def _worker_record(collections, worker_id: str, quiet_s: float) -> None:
    """The liveness record of ``worker_id``, last beaten ``quiet_s`` ago (MongoDB's clock)."""
    beat = utcnow() - timedelta(seconds=quiet_s)
    await collections.workers.insert_one(
        {"_id": worker_id, "incarnation": "i-1", "beat_at": beat, "expires_at": beat}
    )


@pytest.mark.parametrize(
    ("record_quiet_s", "heartbeat_age_s", "released"),
    [
        (30, 20, 1),  # the worker is dead and its job silent since: handed back
        (1, 20, 0),  # the worker beats: its job is its own, however quiet
        (30, 1, 0),  # the job beat just now: its worker woke up
    ],
)
async def test_a_dead_workers_jobs_go_back_after_worker_stale_s_not_stale_after_s(
    store, collections, job_factory, settings, record_quiet_s, heartbeat_age_s, released
):
    await _worker_record(collections, "host-a/0", record_quiet_s)
    job = await job_factory(
        status=JobStatus.processing, progress=45, attempts=1, lease_id="l-1",
        worker_id="host-a/0", heartbeat_at=utcnow() - timedelta(seconds=heartbeat_age_s),
    )  # fmt: skip

    swept = await _sweep(store, settings, stale_after_s=600, worker_stale_s=10)

    after = await _job(collections, job.job_id)
    assert swept["released"] == released
    assert after["status"] == ("pending" if released else "processing")
    assert after.get("lost_runs", 0) == released


async def test_a_job_handed_back_from_a_dead_worker_is_rung_before_jobs_never_started(
    store, collections, job_factory, submit, queue, settings
):
    waiting = await submit(text_pdf(1))  # rung by the API: in the queue now
    await _worker_record(collections, "host-a/0", 30)
    held = await job_factory(
        status=JobStatus.processing, attempts=1, lease_id="l-1", worker_id="host-a/0",
        heartbeat_at=utcnow() - timedelta(seconds=20),
    )  # fmt: skip

    await _sweep(store, settings, worker_stale_s=10)

    first, second = [member.decode() for member in await queue.zrange("arq:queue", 0, -1)]
    assert first.startswith(held.job_id)  # resumed next, not after the whole queue
    assert second.startswith(waiting["job_id"])


# --- Doorbells: rung again only when none is waiting -----------------------------------------


async def test_a_pending_job_whose_doorbell_is_queued_is_not_rung_again(
    store, collections, submit, queue, settings
):
    await submit(text_pdf(1))  # rung by the API; no worker has taken it

    swept = await _sweep(store, settings, pending_grace_s=0)

    assert swept["rung"] == 0
    assert await queue.zcard("arq:queue") == 1  # one doorbell, not two


@pytest.mark.parametrize(("taken_ago_s", "rung"), [(0.0, 0), (60.0, 1)])
async def test_a_doorbell_taken_by_a_worker_that_died_before_claiming_is_rung_again(
    store, collections, submit, queue, settings, taken_ago_s, rung
):
    job = await submit(text_pdf(1))
    rung_long_ago = utcnow() - timedelta(seconds=120)
    await collections.jobs.update_one(
        {"job_id": job["job_id"]}, {"$set": {"rung_at": rung_long_ago}}
    )
    # A worker took the doorbell as arq does (its in-progress key, expiring after the job's
    # timeout), long after it was rung: just now, or a minute ago and never heard of again.
    (arq_id,) = [member.decode() for member in await queue.zrange("arq:queue", 0, -1)]
    in_progress_ms = int((doorbell_timeout_s(settings) + ARQ_IN_PROGRESS_EXTRA_S) * 1000)
    await queue.psetex(
        in_progress_key_prefix + arq_id, in_progress_ms - int(taken_ago_s * 1000), b"1"
    )

    swept = await _sweep(store, settings, pending_grace_s=30)
    await _sweep(store, settings, pending_grace_s=30)  # a second sweep adds nothing

    assert (await _job(collections, job["job_id"]))["status"] == "pending"
    assert swept["rung"] == rung
    assert await queue.zcard("arq:queue") == 1 + rung


# --- Deleted means deleted -------------------------------------------------------------------


async def test_what_a_run_writes_after_its_job_was_deleted_is_swept_even_if_it_dies(
    app, store, collections, submit, settings, client, auth_headers
):
    job = await submit(text_pdf(2))
    run = await store.jobs.apply(lifecycle.claim(job["job_id"], "m", utcnow()))
    deleted = await client.delete(
        f"/api/v1/books/jobs/{job['job_id']}", headers=auth_headers("alice")
    )
    # The run has not noticed yet: it stores a page, then its worker dies.
    key = page_key(run["chapter_id"], 1)
    await store.images.put(key, b"RIFF-page", "image/webp", owner="alice")
    page = StoredPage(index=0, text="late", image={"key": key, "width": 1, "height": 1})
    claimed = {"job_id": job["job_id"], "user_id": "alice"}
    await store.chapters.write_pages(claimed, run["chapter_id"], "a.pdf", 2, [page])

    swept = await _sweep(store, settings, stale_after_s=0)
    again = await _sweep(store, settings, stale_after_s=0)

    assert deleted.status_code == 204
    assert swept["discarded"] == 1
    assert again["discarded"] == 0  # swept once; the tombstone expires by itself
    assert await collections.pages.count_documents({"job_id": job["job_id"]}) == 0
    assert await store.images.count(chapter_prefix(run["chapter_id"])) == 0
    tombstone = await collections.tombstones.find_one({"_id": job["job_id"]})
    assert tombstone["expires_at"] > utcnow()
