"""The in-memory half of the change feed: who follows which job, and handing each event to them.

No I/O: ``Fanout`` holds one ``Topic`` per followed job and one ``Subscription`` per client, and
``follow.JobFeed`` feeds it what it reads from MongoDB.

- **Ordering.** A job's state is handed on only when its version is newer than the last one
  handed on, and each subscriber drops any version it already has, so a client sees versions
  only increase.
- **Bounded memory.** A subscription holds at most ``queue_limit`` events (shared with the other
  subscribers of the job). A subscriber that falls that far behind is dropped, not buffered.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum, StrEnum
from typing import Any

from service.domain.job import utcnow

Doc = dict[str, Any]
# Polling mode asks for pages created since the newest one seen, minus this: the worker's clock
# stamps them, and its writes may commit out of order.
PAGE_OVERLAP = timedelta(seconds=5)


class Kind(Enum):
    state = "state"  # the job's seed-002 view after a change
    page = "page"  # one page stored
    keepalive = "keepalive"  # nothing happened; keeps proxies from closing the stream


class Closed(StrEnum):
    """Why a subscription ended."""

    gone = "gone"  # the client left, or its stream ended
    slow = "slow"  # it fell ``queue_limit`` events behind
    resync = "resync"  # MongoDB lost the history to resume from: reconnect and catch up
    closing = "closing"  # the process is stopping


@dataclass(frozen=True, slots=True)
class Event:
    """One change, rendered once and shared by every subscriber of its job."""

    kind: Kind
    data: bytes
    version: int = 0  # state: the job's version
    page: int = -1  # page: its page_index (0-based)
    terminal: bool = False  # state: the job is completed, failed or cancelled
    # page: the stored page projected on ``page_fields``, for subscribers that render it per
    # client (its image URLs are signed per request); ``data`` is then empty.
    doc: Doc | None = None


class Subscription:
    """One client's interest in one job: the events offered to it, at most ``limit`` waiting."""

    __slots__ = (
        "_items",
        "_limit",
        "_on_close",
        "_waiter",
        "closed",
        "job_id",
        "on_drop",
        "user_id",
    )

    def __init__(
        self, job_id: str, user_id: str, limit: int, on_close: Callable[[Subscription], None]
    ) -> None:
        self.job_id = job_id
        self.user_id = user_id
        self.closed: Closed | None = None
        # Called when the subscription is dropped for being slow: its consumer may be stuck
        # writing to a client that does not read, so it must be stopped, not waited for.
        self.on_drop: Callable[[], object] | None = None
        self._limit = limit
        self._items: list[Event] = []
        self._waiter: asyncio.Future[None] | None = None
        self._on_close = on_close

    def offer(self, event: Event) -> None:
        """Queue ``event``; a subscription already ``limit`` events behind is dropped instead."""
        if self.closed is not None:
            return
        if len(self._items) >= self._limit:
            self.close(Closed.slow)
            return
        self._items.append(event)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def take(self) -> list[Event]:
        """The events waiting, oldest first, once there is at least one; empty once closed."""
        while not self._items:
            if self.closed is not None:
                return []
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        if self.closed is not None:
            return []
        items, self._items = self._items, []
        return items

    def close(self, reason: Closed = Closed.gone) -> None:
        """End the subscription (idempotent): the feed forgets it and its consumer wakes up."""
        if self.closed is not None:
            return
        self.closed = reason
        self._items = []
        self._on_close(self)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        if reason is Closed.slow and self.on_drop is not None:
            self.on_drop()


class Topic:
    """The subscribers of one job, and what was fanned out to them."""

    __slots__ = ("pages_since", "subscribers", "version")

    def __init__(self) -> None:
        self.subscribers: dict[Subscription, None] = {}  # ordered, O(1) removal
        self.version = 0
        self.pages_since: datetime = utcnow() - PAGE_OVERLAP  # polling mode only


class FeedCounts:
    """What the feed did, exported on ``/metrics`` (service/api/routes/metrics.py)."""

    __slots__ = ("changes", "dropped", "events", "resyncs")

    def __init__(self) -> None:
        self.changes = 0  # changes read (change stream or polling), subscribed or not
        self.events = 0  # events offered to subscriptions
        self.dropped = 0  # subscriptions dropped for being slow
        self.resyncs = 0  # re-reads of every subscribed job after a break


class Fanout:
    """The subscriptions of one API process, by job, and what was handed to them."""

    def __init__(self, queue_limit: int) -> None:
        self._queue_limit = queue_limit
        self._topics: dict[str, Topic] = {}
        self._per_user: dict[str, int] = {}
        self._open = 0
        self.counts = FeedCounts()

    def subscribe(self, job_id: str, user_id: str) -> Subscription:
        """Start receiving ``job_id``'s events."""
        subscription = Subscription(job_id, user_id, self._queue_limit, self._forget)
        topic = self._topics.get(job_id)
        if topic is None:
            topic = self._topics[job_id] = Topic()
        topic.subscribers[subscription] = None
        self._per_user[user_id] = self._per_user.get(user_id, 0) + 1
        self._open += 1
        return subscription

    def streams_of(self, user_id: str) -> int:
        """How many subscriptions ``user_id`` holds in this process."""
        return self._per_user.get(user_id, 0)

    @property
    def subscriptions(self) -> int:
        """How many subscriptions are open in this process."""
        return self._open

    def job_ids(self) -> list[str]:
        """The jobs somebody follows."""
        return list(self._topics)

    def topic(self, job_id: str) -> Topic | None:
        return self._topics.get(job_id)

    def _forget(self, subscription: Subscription) -> None:
        topic = self._topics.get(subscription.job_id)
        if topic is not None:
            topic.subscribers.pop(subscription, None)
            if not topic.subscribers:
                del self._topics[subscription.job_id]
        self._open -= 1
        left = self._per_user.get(subscription.user_id, 0) - 1
        if left > 0:
            self._per_user[subscription.user_id] = left
        else:
            self._per_user.pop(subscription.user_id, None)
        if subscription.closed is Closed.slow:
            self.counts.dropped += 1

    def publish(self, topic: Topic, event: Event) -> None:
        """Offer ``event`` to every subscriber of ``topic``."""
        self.counts.events += len(topic.subscribers)
        for subscription in tuple(topic.subscribers):  # a slow one leaves the dict here
            subscription.offer(event)

    def publish_state(self, job_id: str, version: int, render: Callable[[], Event]) -> bool:
        """Hand on a job's state newer than the last one handed on (``render`` makes its event
        only then); whether it was."""
        self.counts.changes += 1
        topic = self._topics.get(job_id)
        if topic is None or version <= topic.version:
            return False
        topic.version = version
        self.publish(topic, render())
        return True

    def publish_page(self, job_id: str, render: Callable[[], Event]) -> None:
        """Hand on a stored page of ``job_id`` (``render`` makes its event if anyone follows)."""
        self.counts.changes += 1
        topic = self._topics.get(job_id)
        if topic is not None:
            self.publish(topic, render())

    def publish_all(self, event: Event) -> None:
        """Offer ``event`` to every subscription (keepalives)."""
        for topic in list(self._topics.values()):
            self.publish(topic, event)

    def close_all(self, reason: Closed) -> None:
        """End every subscription."""
        for topic in list(self._topics.values()):
            for subscription in tuple(topic.subscribers):
                subscription.close(reason)
