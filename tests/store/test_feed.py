"""service/store/feed/ on real mongods: change streams fanned out by job id, in order; pages;
slow subscribers dropped; a restart of MongoDB survived without losing a page; and the polling
fallback on a standalone server, which has no change streams."""

from __future__ import annotations

import asyncio
import json
from contextlib import asynccontextmanager

import pytest
from pymongo import AsyncMongoClient

from devstack.embedded import free_port, remove_tree, start_mongod
from service.domain import lifecycle
from service.domain.job import JobStatus, utcnow
from service.store.chapters import StoredPage
from service.store.feed import Closed, JobFeed, Kind

LEASE = "lease-1"
WAIT_S = 20  # a bound on waiting for an event, so a missing one fails the test instead of hanging


def _render_state(doc):
    return json.dumps(
        {"v": doc["version"], "progress": doc["progress"], "status": doc["status"]}
    ).encode()


def _render_page(doc):
    return json.dumps({"page": doc["metadata"]["page_number"]}).encode()


def _feed(jobs, chunks, **options):
    options = {"keepalive_s": 3600, "queue_limit": 100, **options}
    return JobFeed(
        jobs, chunks, job_fields={"progress": 1}, page_fields={"metadata.page_number": 1},
        render_state=_render_state, render_page=_render_page, keepalive=b": k\n\n", **options,
    )  # fmt: skip


@asynccontextmanager
async def running(feed):
    await feed.start()
    try:
        yield feed
    finally:
        await feed.aclose()


@pytest.fixture
async def feed(collections, app):
    async with running(_feed(collections.jobs, collections.pages)) as started:
        yield started


async def _next(subscription):
    """The next events offered to ``subscription`` (waits for at least one)."""
    return await asyncio.wait_for(subscription.take(), WAIT_S)


async def _states(subscription, count):
    """The next ``count`` state events, decoded; fails if the subscription closes first."""
    seen = []
    while len(seen) < count:
        events = await _next(subscription)
        assert events, f"closed ({subscription.closed}) after {seen}"
        seen += [json.loads(e.data) for e in events if e.kind is Kind.state]
    return seen


async def _running(job_factory, user_id="alice"):
    return await job_factory(
        user_id=user_id, status=JobStatus.processing, lease_id=LEASE, heartbeat_at=utcnow()
    )


async def _advance(apply, job_id, progress):
    return await apply(lifecycle.advance(job_id, LEASE, progress, f"at {progress}", utcnow()))


async def test_changes_reach_each_subscriber_of_their_job_only(apply, feed, job_factory):
    job_a, job_b = await _running(job_factory), await _running(job_factory)
    first, second = feed.subscribe(job_a.job_id, "alice"), feed.subscribe(job_a.job_id, "alice")
    other = feed.subscribe(job_b.job_id, "alice")

    await _advance(apply, job_a.job_id, 40)
    await _advance(apply, job_b.job_id, 50)

    assert await _states(first, 1) == [{"v": 2, "progress": 40, "status": "processing"}]
    assert await _states(second, 1) == [{"v": 2, "progress": 40, "status": "processing"}]
    assert await _states(other, 1) == [{"v": 2, "progress": 50, "status": "processing"}]
    assert feed.mode == "change streams"


async def test_versions_only_increase_and_a_heartbeat_is_no_event(apply, feed, job_factory):
    job = await _running(job_factory)
    subscription = feed.subscribe(job.job_id, "alice")

    for progress in (35, 40, 45):
        await _advance(apply, job.job_id, progress)
    await apply(lifecycle.beat(job.job_id, LEASE, utcnow()))
    done = await apply(
        lifecycle.complete(job.job_id, LEASE, {"chapter_id": "c", "total_pages": 1}, "ok", utcnow())
    )
    seen = []
    while not seen or seen[-1]["status"] != "completed":
        seen += await _states(subscription, 1)

    versions = [state["v"] for state in seen]
    assert versions == sorted(set(versions)), "versions repeat or go backwards"
    assert seen[-1] == {"v": done["version"], "progress": 100, "status": "completed"}
    # Writes landing together may come as one event, never as more events than writes.
    assert len(seen) <= 4


async def test_terminal_state_is_marked_terminal(apply, feed, job_factory):
    job = await _running(job_factory)
    subscription = feed.subscribe(job.job_id, "alice")

    await apply(lifecycle.cancel(job.job_id, "alice", utcnow()))
    events = await _next(subscription)

    assert [(e.kind, e.terminal) for e in events] == [(Kind.state, True)]


async def test_pages_stored_become_page_events_in_order(store, feed, job_factory):
    job = await _running(job_factory)
    subscription = feed.subscribe(job.job_id, "alice")
    doc = {"job_id": job.job_id, "user_id": "alice"}

    await store.chapters.write_pages(
        doc,
        "chapter-1",
        "a.pdf",
        5,
        [StoredPage(0, "one"), StoredPage(1, "two"), StoredPage(2, "3")],
    )
    await store.chapters.write_pages(
        doc, "chapter-1", "a.pdf", 5, [StoredPage(0, "again")]
    )  # an update: no event
    await store.chapters.write_pages(doc, "chapter-1", "a.pdf", 5, [StoredPage(3, "four")])
    pages = []
    while len(pages) < 4:
        pages += [(e.page, json.loads(e.data)) for e in await _next(subscription)]

    assert pages == [(0, {"page": 1}), (1, {"page": 2}), (2, {"page": 3}), (3, {"page": 4})]
    assert [[e.page for e in batch] async for batch in feed.stored_pages(job.job_id)] == [
        [0, 1, 2, 3]
    ]


async def test_stored_pages_come_in_bounded_batches_from_past_those_seen(feed, store, job_factory):
    job = await _running(job_factory)
    doc = {"job_id": job.job_id, "user_id": "alice"}
    pages = [StoredPage(index, f"p{index}") for index in range(25)]
    await store.chapters.write_pages(doc, "chapter-1", "a.pdf", 25, pages)

    batches = [
        [e.page for e in batch] async for batch in feed.stored_pages(job.job_id, after=3, batch=10)
    ]

    assert batches == [list(range(3, 13)), list(range(13, 23)), [23, 24]]


async def test_a_subscriber_that_does_not_read_is_dropped_and_others_go_on(
    apply, collections, job_factory, app
):
    small = _feed(
        collections.jobs, collections.pages,
        queue_limit=3,
    )  # fmt: skip
    async with running(small) as feed:
        job = await _running(job_factory)
        slow = feed.subscribe(job.job_id, "alice")
        reader = feed.subscribe(job.job_id, "bob")
        dropped = []
        slow.on_drop = lambda: dropped.append(True)

        seen = []
        for progress in range(31, 36):
            await _advance(apply, job.job_id, progress)
            seen += await _states(reader, 1)  # reads every event as it comes

        assert slow.closed is Closed.slow
        assert dropped == [True]
        assert await slow.take() == []
        assert [state["progress"] for state in seen] == [31, 32, 33, 34, 35]
        assert feed.streams_of("alice") == 0
        assert feed.streams_of("bob") == 1
        assert feed.counts.dropped == 1


async def test_closing_a_subscription_forgets_it(feed, job_factory):
    job = await _running(job_factory)
    subscription = feed.subscribe(job.job_id, "alice")
    assert feed.streams_of("alice") == 1

    subscription.close()

    assert feed.streams_of("alice") == 0
    assert feed.subscriptions == 0
    assert await subscription.take() == []


async def test_keepalive_reaches_every_subscriber(collections, job_factory, app):
    ticking = _feed(
        collections.jobs, collections.pages,
        keepalive_s=0.05,
    )  # fmt: skip
    async with running(ticking) as feed:
        job = await _running(job_factory)
        subscription = feed.subscribe(job.job_id, "alice")

        events = await _next(subscription)

    assert events[0].kind is Kind.keepalive
    assert events[0].data == b": k\n\n"


async def test_feed_closing_ends_every_subscription(collections, job_factory, app):
    feed = _feed(collections.jobs, collections.pages)
    await feed.start()
    job = await _running(job_factory)
    subscription = feed.subscribe(job.job_id, "alice")

    await feed.aclose()

    assert subscription.closed is Closed.closing
    assert await subscription.take() == []


# --- MongoDB restarted under the feed --------------------------------------------------------


@pytest.fixture
def own_mongod(tmp_path):
    """A replica-set mongod of this test's own, which it may stop and start."""
    port = free_port()
    server = start_mongod(tmp_path / "db", port)
    state = {"server": server}

    def restart():
        state["server"].stop()
        state["server"] = start_mongod(tmp_path / "db", port)

    yield server.url, restart
    state["server"].stop()
    remove_tree(tmp_path / "db")


def _versions(events):
    return [json.loads(e.data)["v"] for e in events if e.kind is Kind.state]


async def _insert_running_job(jobs, job_id):
    now = utcnow()
    await jobs.insert_one({
        "job_id": job_id, "user_id": "alice", "status": "processing", "lease_id": LEASE,
        "progress": 30, "message": "m", "version": 1, "created_at": now, "updated_at": now,
    })  # fmt: skip


async def test_after_a_mongod_restart_no_page_is_lost_and_state_is_current(own_mongod):
    url, restart = own_mongod
    client = AsyncMongoClient(url, tz_aware=True, serverSelectionTimeoutMS=1000)
    db = client.feed_restart
    jobs, chunks = db.pdf_chapter_jobs, db.chapter_pages
    await _insert_running_job(jobs, "job-1")
    async with running(_feed(jobs, chunks, retry_s=0.1)) as feed:
        subscription = feed.subscribe("job-1", "alice")
        await chunks.insert_one(
            {"job_id": "job-1", "page_index": 0, "metadata": {"page_number": 1}}
        )
        assert [e.page for e in await _next(subscription)] == [0]

        await asyncio.to_thread(restart)
        # Written the moment MongoDB is back, perhaps before the feed has reopened its streams.
        await chunks.insert_one(
            {"job_id": "job-1", "page_index": 1, "metadata": {"page_number": 2}}
        )
        write = lifecycle.advance("job-1", LEASE, 50, "m", utcnow())
        await jobs.find_one_and_update(write.filter, write.pipeline)
        events = []
        # A feed that re-reads its jobs after the break may first send the state it read then
        # (version 1, if that was before the write): wait for the write's own.
        while not any(e.page == 1 for e in events) or _versions(events)[-1:] != [2]:
            batch = await _next(subscription)
            assert batch, f"closed ({subscription.closed}) after {events}"
            events += batch

    await client.close()
    assert [e.page for e in events if e.kind is Kind.page] == [1]
    assert _versions(events)[-1] == 2
    assert set(_versions(events)) <= {1, 2}
    # Whether the feed saw the break (and re-read its jobs) depends on timing: PyMongo resumes a
    # change stream once by itself on a resumable error. What the subscriber gets is the point.


# --- Without a replica set ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def standalone_mongod(tmp_path_factory):
    dbpath = tmp_path_factory.mktemp("standalone")
    server = start_mongod(dbpath, free_port(), replica_set=False)
    yield server.url
    server.stop()
    remove_tree(dbpath)


async def test_without_a_replica_set_the_feed_polls_states_and_pages(standalone_mongod):
    client = AsyncMongoClient(standalone_mongod, tz_aware=True)
    db = client.feed_polling
    jobs, chunks = db.pdf_chapter_jobs, db.chapter_pages
    await _insert_running_job(jobs, "job-2")
    async with running(_feed(jobs, chunks, poll_s=0.05)) as feed:
        subscription = feed.subscribe("job-2", "alice")

        now = utcnow()
        await chunks.insert_many([
            {"job_id": "job-2", "page_index": i, "metadata": {"page_number": i + 1}, "created_at": now}
            for i in range(2)
        ])  # fmt: skip
        write = lifecycle.advance("job-2", LEASE, 50, "m", utcnow())
        await jobs.find_one_and_update(write.filter, write.pipeline)
        write = lifecycle.complete(
            "job-2", LEASE, {"chapter_id": "c", "total_pages": 2}, "ok", utcnow()
        )
        await jobs.find_one_and_update(write.filter, write.pipeline)
        events = []
        while not any(e.terminal for e in events):
            events += await _next(subscription)

    await db.client.drop_database("feed_polling")
    await client.close()
    assert feed.mode == "polling"
    pages = [e.page for e in events if e.kind is Kind.page]
    assert sorted(set(pages)) == [0, 1]
    states = [json.loads(e.data) for e in events if e.kind is Kind.state]
    assert states[-1]["status"] == "completed"
    assert [s["v"] for s in states] == sorted({s["v"] for s in states})
    # The pages come before the terminal state that follows them.
    assert events.index(next(e for e in events if e.terminal)) > max(
        i for i, e in enumerate(events) if e.kind is Kind.page
    )
