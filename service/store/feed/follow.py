"""Following MongoDB for job changes: one change stream per API process, handed to ``Fanout``.

Each API process follows two change streams, whatever the number of clients: updates of
``pdf_chapter_jobs`` that bump ``version`` (what a client sees; heartbeats are filtered out by
MongoDB) and inserts into ``chapter_pages`` (a page stored). Each change is rendered once (the
API passes the renderers) and offered to the subscribers of its job, found by job id in a dict.

- **Ordering.** Job documents come with ``full_document="updateLookup"``: the job as it is when
  MongoDB reads it, so writes that land together may arrive as one event with the newest state.
  ``Fanout`` (``fanout.py``) hands on only versions newer than the last.
- **Breaks.** The resume token of each stream is kept across errors: a reopened stream starts
  where the broken one stopped, and no page is lost. After every break the subscribed jobs are
  read again and every subscriber gets the current state. When MongoDB no longer has the history
  to resume from, every subscription is closed: clients reconnect and catch up from scratch.
- **No replica set.** Change streams need one. On a standalone server the feed re-reads the
  subscribed jobs every ``poll_s`` (one ``$in`` query per 500 jobs), and the new pages of those
  that changed.
- **Batching.** After each batch of changes the feed waits ``gather_s`` (20 ms) before the
  next getMore, so that changes arriving together cost one round trip.
- **Bounded memory.** See ``fanout.py``: a subscriber too far behind is dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Awaitable,
    Callable,
    Coroutine,
    Iterator,
)
from datetime import datetime
from itertools import islice
from typing import Any

from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import OperationFailure, PyMongoError

from service.domain.job import JobStatus
from service.store.feed.fanout import (
    PAGE_OVERLAP,
    Closed,
    Event,
    Fanout,
    FeedCounts,
    Kind,
    Subscription,
)

Doc = dict[str, Any]
Render = Callable[[Doc], bytes]
CLOSE_TIMEOUT_S = 4.0  # under the API lifespan's 5 s per client, so subscriptions still get closed
log = logging.getLogger("service.feed")

NOT_A_REPLICA_SET = 40573  # "The $changeStream stage is only supported on replica sets"
# The resume token can no longer be used: InvalidResumeToken, ChangeStreamFatalError,
# ChangeStreamHistoryLost.
TOKEN_LOST = frozenset({260, 280, 286})
READ_BATCH = 500  # job ids per $in query when re-reading subscribed jobs
# Stored pages a client catching up is sent at a time (one query, one write each).
CATCH_UP_BATCH = 100
# After a batch of changes, wait this long before asking for the next: MongoDB answers a getMore
# as soon as one change is there, and the driver's cost is per getMore. Following 200 writes/s
# cost the API 11% of a core with a getMore per change, 4-5% with this wait (bench/push.py's
# writer, no clients); a change waits 20 ms at most for it.
GATHER_S = 0.02


class JobFeed:
    """Job states and stored pages of one API process, pushed to its subscribers.

    ``jobs`` and ``pages`` are the collections; ``job_fields`` and ``page_fields`` the
    projections the renderers need (``job_id``, ``status`` and ``version`` are added, and
    ``job_id`` and ``page_index`` for pages). ``render_state`` and ``render_page`` turn a
    projected document into the bytes sent to clients; without ``render_page`` a page event
    carries its document (``Event.doc``) for the subscriber to render. ``keepalive`` is offered
    to every subscription every ``keepalive_s``.
    """

    def __init__(
        self,
        jobs: AsyncCollection[Doc],
        pages: AsyncCollection[Doc],
        *,
        job_fields: dict[str, int],
        page_fields: dict[str, int],
        render_state: Render,
        render_page: Render | None = None,
        keepalive: bytes,
        keepalive_s: float,
        queue_limit: int,
        poll_s: float = 1.0,
        retry_s: float = 1.0,
        gather_s: float = GATHER_S,
    ) -> None:
        self._jobs = jobs
        self._pages = pages
        self._job_fields = {**job_fields, "_id": 0, "job_id": 1, "status": 1, "version": 1}
        self._page_fields = {**page_fields, "_id": 0, "job_id": 1, "page_index": 1}
        self._render_state = render_state
        self._render_page = render_page
        self._keepalive = Event(Kind.keepalive, keepalive)
        self._keepalive_s = keepalive_s
        self._poll_s = poll_s
        self._retry_s = retry_s
        self._gather_s = gather_s
        self._fanout = Fanout(queue_limit)
        self._tasks: list[asyncio.Task[None]] = []
        self._streams: list[asyncio.Task[None]] = []
        self._opened: set[str] = set()
        self._ready = asyncio.Event()
        self.mode = "starting"  # then "change streams" or "polling"

    # --- Subscribing ---------------------------------------------------------------------

    def subscribe(self, job_id: str, user_id: str) -> Subscription:
        """Start receiving ``job_id``'s events. Subscribe *before* reading the job's current
        state: whatever changes after that read is then sure to arrive."""
        return self._fanout.subscribe(job_id, user_id)

    def streams_of(self, user_id: str) -> int:
        """How many subscriptions ``user_id`` holds in this process."""
        return self._fanout.streams_of(user_id)

    @property
    def subscriptions(self) -> int:
        """How many subscriptions are open in this process."""
        return self._fanout.subscriptions

    @property
    def counts(self) -> FeedCounts:
        """What the feed read and handed on (``/metrics``)."""
        return self._fanout.counts

    async def stored_pages(
        self, job_id: str, *, after: int = 0, batch: int = CATCH_UP_BATCH
    ) -> AsyncGenerator[list[Event], None]:
        """The pages of ``job_id`` stored so far past page ``after``, in page order, as events,
        ``batch`` at a time (a client's catch-up): one indexed range query per batch, so a
        client of a 5,000-page job costs one batch of memory, and nothing while it reads."""
        start = after  # page_index of page after + 1
        while True:
            found = self._pages.find(
                {"job_id": job_id, "page_index": {"$gte": start}}, self._page_fields
            )
            docs = await found.sort("page_index", 1).limit(batch).to_list(None)
            if not docs:
                return
            yield [self._page_event(doc) for doc in docs]
            if len(docs) < batch:
                return
            start = int(docs[-1]["page_index"]) + 1

    # --- Fanning out -------------------------------------------------------------------------

    def _page_event(self, doc: Doc) -> Event:
        page = int(doc["page_index"])
        if self._render_page is None:
            return Event(Kind.page, b"", page=page, doc=doc)
        return Event(Kind.page, self._render_page(doc), page=page)

    def _publish_state(self, doc: Doc) -> bool:
        """Hand on a job document newer than the last one handed on; whether it was."""

        def event() -> Event:
            terminal = JobStatus(doc["status"]).is_terminal
            version = int(doc.get("version", 0))
            return Event(Kind.state, self._render_state(doc), version=version, terminal=terminal)

        return self._fanout.publish_state(doc.get("job_id", ""), int(doc.get("version", 0)), event)

    def _publish_page(self, doc: Doc) -> None:
        self._fanout.publish_page(doc.get("job_id", ""), lambda: self._page_event(doc))

    # --- Running -------------------------------------------------------------------------------

    async def start(self, wait_s: float = 10.0) -> None:
        """Start following MongoDB; return once both streams are open (or polling was chosen),
        or after ``wait_s`` while they are still being opened (they keep trying)."""
        job_pipeline: list[Doc] = [
            {
                "$match": {
                    "$or": [
                        {"operationType": "replace"},
                        {
                            "operationType": "update",
                            "updateDescription.updatedFields.version": {"$exists": True},
                        },
                    ]
                }
            },
            {"$project": _change_projection(self._job_fields)},
        ]
        page_pipeline: list[Doc] = [
            {"$match": {"operationType": "insert"}},
            {"$project": _change_projection(self._page_fields)},
        ]
        follow_jobs = self._follow(
            "jobs",
            lambda token: self._jobs.watch(
                job_pipeline, full_document="updateLookup", resume_after=token
            ),
            self._on_job_change,
        )
        follow_pages = self._follow(
            "pages",
            lambda token: self._pages.watch(page_pipeline, resume_after=token),
            self._on_page_change,
        )
        self._streams = [self._spawn(follow_jobs), self._spawn(follow_pages)]
        self._spawn(self._keep_alive())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._ready.wait(), wait_s)
        if not self._ready.is_set():
            log.warning("change streams not open after %.0f s; still trying", wait_s)

    def _spawn(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.append(task)
        return task

    async def aclose(self, wait_s: float = CLOSE_TIMEOUT_S) -> None:
        """Stop following MongoDB and end every subscription.

        Bounded: a change stream caught in the driver's reconnect to a MongoDB that just came back
        must not hold the API's shutdown (it is abandoned after ``wait_s``)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_s
        pending = {task for task in self._tasks if not task.done()}
        while pending and loop.time() < deadline:
            # Again and again: PyMongo can lose a cancellation that lands while it handles a
            # connection failure, and go on to read from the server.
            for task in pending:
                task.cancel()
            _, pending = await asyncio.wait(pending, timeout=0.25)
        if pending:  # never hold up the process's shutdown for the feed
            log.warning("the feed did not stop within %.0f s", wait_s)
        self._fanout.close_all(Closed.closing)

    async def _keep_alive(self) -> None:
        while True:
            await asyncio.sleep(self._keepalive_s)
            self._fanout.publish_all(self._keepalive)

    def _fall_back_to_polling(self) -> None:
        """MongoDB is not a replica set: stop both streams and re-read instead."""
        if self.mode == "polling":
            return
        log.info(
            "MongoDB is not a replica set: re-reading subscribed jobs every %s s", self._poll_s
        )
        self.mode = "polling"
        current = asyncio.current_task()
        for task in self._streams:
            if task is not current:
                task.cancel()
        self._spawn(self._poll())
        self._ready.set()

    def _on_job_change(self, change: Doc) -> None:
        doc = change.get("fullDocument")
        if doc:  # None when the job was deleted before MongoDB looked it up
            self._publish_state(doc)

    def _on_page_change(self, change: Doc) -> None:
        doc = change.get("fullDocument")
        if doc:
            self._publish_page(doc)

    async def _follow(
        self,
        name: str,
        open_stream: Callable[[Doc | None], Awaitable[Any]],
        handle: Callable[[Doc], None],
    ) -> None:
        """Follow one change stream for ever, resuming after errors from the last token seen."""
        token: Doc | None = None
        broken = False
        while True:
            try:
                async with await open_stream(token) as stream:
                    self._opened.add(name)
                    if len(self._opened) == 2:
                        self.mode = "change streams"
                        self._ready.set()
                    if broken:
                        await self._after_break(name, resumed=token is not None)
                        broken = False
                    while True:
                        change = await stream.try_next()
                        # Advances while idle too, so a resume never replays a long quiet spell.
                        token = stream.resume_token
                        if change is None:
                            continue  # the getMore waited for changes already
                        self._handle(handle, change)
                        if not _buffered(stream):  # the next read is a getMore: let changes gather
                            await asyncio.sleep(self._gather_s)
            except OperationFailure as exc:
                _unless_stopping()
                if exc.code == NOT_A_REPLICA_SET:
                    self._fall_back_to_polling()
                    return
                if exc.code in TOKEN_LOST:
                    token = None
                log.warning("%s change stream failed (%s); reopening", name, exc.code)
            except PyMongoError as exc:
                _unless_stopping()
                log.warning("%s change stream broken (%s); reopening", name, type(exc).__name__)
            broken = True
            await asyncio.sleep(self._retry_s)

    def _handle(self, handle: Callable[[Doc], None], change: Doc) -> None:
        try:
            handle(change)
        except Exception:  # one bad document must not stop the feed for every client
            log.exception("could not fan out a change of job %s", _job_of(change))

    async def _after_break(self, name: str, *, resumed: bool) -> None:
        """Bring subscribers up to date after a stream broke and was opened again."""
        if name == "pages" and not resumed:
            # Pages stored during the gap are unknown: every client reconnects and catches up.
            log.warning("page history lost; closing %d subscriptions", self.subscriptions)
            self._fanout.close_all(Closed.resync)
            return
        if name == "jobs":
            self.counts.resyncs += 1
            async for doc in self._read_subscribed():
                self._publish_state(doc)

    async def _read_subscribed(self) -> AsyncIterator[Doc]:
        """The subscribed jobs, as they are now, in ``$in`` queries of ``READ_BATCH``."""
        for ids in _batches(self._fanout.job_ids(), READ_BATCH):
            found = self._jobs.find({"job_id": {"$in": ids}}, self._job_fields)
            for doc in await found.to_list(None):
                yield doc

    # --- Without a replica set ---------------------------------------------------------------

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self._poll_s)
            try:
                await self._poll_once()
            except PyMongoError as exc:
                _unless_stopping()
                log.warning("polling subscribed jobs failed (%s)", type(exc).__name__)
            except Exception:  # a bad document must not stop polling for every client
                log.exception("polling subscribed jobs failed")

    async def _poll_once(self) -> None:
        """One round: new pages of the jobs whose version moved, then their states (so a
        terminal state comes after its job's last pages)."""
        changed: list[Doc] = []
        async for doc in self._read_subscribed():
            topic = self._fanout.topic(doc["job_id"])
            if topic is not None and int(doc.get("version", 0)) > topic.version:
                changed.append(doc)
        if changed:
            await self._poll_pages([doc["job_id"] for doc in changed])
        for doc in changed:
            self._publish_state(doc)

    async def _poll_pages(self, job_ids: list[str]) -> None:
        topics = {
            job_id: topic for job_id in job_ids if (topic := self._fanout.topic(job_id)) is not None
        }
        if not topics:
            return
        since = min(topic.pages_since for topic in topics.values())
        query = {"job_id": {"$in": list(topics)}, "created_at": {"$gte": since}}
        fields = {**self._page_fields, "created_at": 1}
        found = self._pages.find(query, fields).sort([("job_id", 1), ("page_index", 1)])
        for doc in await found.to_list(None):
            topic = topics[doc["job_id"]]
            created: datetime = doc.pop("created_at")
            if created >= topic.pages_since:
                self._publish_page(doc)
                topic.pages_since = max(topic.pages_since, created - PAGE_OVERLAP)


def _change_projection(fields: dict[str, int]) -> Doc:
    """A change stream ``$project`` keeping ``fields`` of the full document (and the token)."""
    kept: Doc = {
        f"fullDocument.{name}": 1 for name, keep in fields.items() if keep and name != "_id"
    }
    return {"operationType": 1, **kept}


def _unless_stopping() -> None:
    """Re-raise the cancellation a driver error took the place of.

    Closing a change stream while MongoDB is unreachable raises a driver error from the stream's
    ``__aexit__``, which replaces the ``CancelledError`` that was closing it: without this, a
    feed being stopped would catch that error and go on for ever.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


def _buffered(stream: Any) -> bool:
    """Whether the change stream holds changes already read (PyMongo's own check; private, so
    when it is gone every read is taken to be buffered and changes are not gathered)."""
    has_next = getattr(getattr(stream, "_cursor", None), "_has_next", None)
    return bool(has_next()) if callable(has_next) else True


def _job_of(change: Doc) -> object:
    return (change.get("fullDocument") or {}).get("job_id")


def _batches(items: list[str], size: int) -> Iterator[list[str]]:
    iterator = iter(items)
    while batch := list(islice(iterator, size)):
        yield batch
