"""The change feed's in-memory half, without a database: who follows which job, what each gets."""

from __future__ import annotations

import asyncio

from service.store.feed.fanout import Closed, Event, Fanout, Kind


def _state(version: int, terminal: bool = False) -> Event:
    return Event(Kind.state, f"v{version}".encode(), version=version, terminal=terminal)


async def test_a_state_reaches_each_subscriber_of_its_job_only():
    fanout = Fanout(queue_limit=10)
    alice = fanout.subscribe("job-1", "alice")
    again = fanout.subscribe("job-1", "alice")
    other = fanout.subscribe("job-2", "bob")

    published = fanout.publish_state("job-1", 2, lambda: _state(2))

    assert published is True
    assert [e.version for e in await alice.take()] == [2]
    assert [e.version for e in await again.take()] == [2]
    assert other._items == []  # nothing for the other job


async def test_an_older_or_equal_version_is_not_handed_on_nor_rendered():
    fanout = Fanout(queue_limit=10)
    subscription = fanout.subscribe("job-1", "alice")
    rendered: list[int] = []

    def render(version: int) -> Event:
        rendered.append(version)
        return _state(version)

    results = [fanout.publish_state("job-1", v, lambda v=v: render(v)) for v in (3, 2, 3, 4)]

    assert results == [True, False, False, True]
    assert rendered == [3, 4]
    assert [e.version for e in await subscription.take()] == [3, 4]
    assert fanout.counts.changes == 4


async def test_a_subscriber_that_falls_behind_is_dropped_and_its_consumer_stopped():
    fanout = Fanout(queue_limit=2)
    slow = fanout.subscribe("job-1", "alice")
    fast = fanout.subscribe("job-1", "bob")
    stopped: list[bool] = []
    slow.on_drop = lambda: stopped.append(True)

    for version in (1, 2):
        fanout.publish_state("job-1", version, lambda v=version: _state(v))
        await fast.take()
    fanout.publish_state("job-1", 3, lambda: _state(3))

    assert slow.closed is Closed.slow
    assert stopped == [True]
    assert [e.version for e in await fast.take()] == [3]
    assert fanout.counts.dropped == 1
    assert fanout.streams_of("alice") == 0
    assert fanout.streams_of("bob") == 1


async def test_closing_forgets_the_subscription_and_wakes_its_consumer():
    fanout = Fanout(queue_limit=10)
    subscription = fanout.subscribe("job-1", "alice")
    waiting = asyncio.create_task(subscription.take())
    await asyncio.sleep(0)

    subscription.close()

    assert await waiting == []
    assert fanout.subscriptions == 0
    assert fanout.job_ids() == []
    assert fanout.topic("job-1") is None


async def test_close_all_and_publish_all_reach_every_job():
    fanout = Fanout(queue_limit=10)
    first, second = fanout.subscribe("job-1", "a"), fanout.subscribe("job-2", "b")
    keepalive = Event(Kind.keepalive, b": keepalive\n\n")

    fanout.publish_all(keepalive)
    taken = [await first.take(), await second.take()]
    fanout.close_all(Closed.resync)

    assert taken == [[keepalive], [keepalive]]
    assert (first.closed, second.closed) == (Closed.resync, Closed.resync)
    assert fanout.subscriptions == 0


async def test_a_page_of_a_job_nobody_follows_is_not_rendered():
    fanout = Fanout(queue_limit=10)
    rendered: list[str] = []

    fanout.publish_page("job-9", lambda: rendered.append("x") or Event(Kind.page, b"", page=0))

    assert rendered == []
    assert fanout.counts.changes == 1
