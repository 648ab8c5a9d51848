"""Polling reads, coalesced: the polls one API process has in flight share MongoDB queries.

Used by every job status endpoint clients poll (the book-jobs poll, the job detail, the ingestion
status), one reader each.

Browsers poll each job every couple of seconds, so a busy API process always has many polls
waiting on MongoDB at once. Each ``find_one`` costs the driver several times more CPU than it
costs MongoDB to find the document (server selection, a session, a cursor, two asyncio tasks per
reply), and that driver cost is most of the polling endpoint's CPU. So ``JobReader`` sends the
reads that pile up together as one ``find({"job_id": {"$in": [...]}})`` and hands each caller its
own document; with nothing else in flight a read is sent at once, as a plain ``find_one``.

Nothing gets staler: a read only ever joins a query that has not been sent yet, so every caller
sees the job as it was after its request arrived (the same guarantee as its own ``find_one``). A
failed query fails each of its callers with the driver's error, which the handlers map to 503 as
before, and a read never waits longer than a lone ``find_one`` could have (a 503 then); a caller
that goes away (client disconnect) leaves the others unaffected.
"""

from __future__ import annotations

import asyncio
import contextvars
import copy
from collections.abc import Callable
from functools import partial
from itertools import islice
from typing import Any, cast

from pymongo.asynchronous.collection import AsyncCollection

from service.domain.errors import DependencyUnavailable
from service.store.documents import JobDoc

Doc = dict[str, Any]
Batch = dict[str, list["asyncio.Future[Doc | None]"]]


class ReadCounts:
    """How many reads were asked for and how many queries served them (``/metrics``)."""

    __slots__ = ("queries", "reads")

    def __init__(self) -> None:
        self.reads = 0
        self.queries = 0


def _own_copy(failure: BaseException) -> BaseException:
    """One exception object per caller: raising it writes that caller's traceback into it."""
    try:
        return copy.copy(failure)
    except Exception:  # an exception class that cannot be rebuilt from its args
        return failure


def _give_up(future: asyncio.Future[Doc | None]) -> None:
    if not future.done():
        future.set_exception(DependencyUnavailable("database"))


class JobReader:
    """Reads job documents by ``job_id`` with one projection, coalescing concurrent reads.

    At most ``max_in_flight`` queries run at once and each carries at most ``max_batch`` ids;
    reads that arrive meanwhile wait for the next query, which is sent as soon as one returns.
    With ``max_batch=1`` nothing is coalesced: each read is its own ``find_one``, bounded by
    the driver's own timeouts. A coalesced read that gets no answer within ``timeout_s``, queued
    behind slow queries included, raises ``DependencyUnavailable``: give it the client's socket
    timeout, the longest a lone ``find_one`` could have waited for its answer.
    """

    def __init__(
        self,
        collection: Callable[[], AsyncCollection[Doc]],
        projection: dict[str, int],
        *,
        max_batch: int = 100,
        max_in_flight: int = 2,
        timeout_s: float = 5.0,
        counts: ReadCounts | None = None,
    ) -> None:
        if max_batch < 1 or max_in_flight < 1 or timeout_s <= 0:
            raise ValueError("max_batch, max_in_flight and timeout_s must be positive")
        self._collection = collection
        self._projection = {**projection, "job_id": 1}  # needed to hand documents back
        self._max_batch = max_batch
        self._max_in_flight = max_in_flight
        self._timeout_s = timeout_s
        self.counts = counts if counts is not None else ReadCounts()
        self._waiting: Batch = {}
        self._flush_scheduled = False
        self._in_flight = 0
        self._tasks: set[asyncio.Task[dict[str, Doc]]] = set()
        self._closed = False

    async def read(self, job_id: str) -> JobDoc | None:
        """The job's document (projected), or None when there is no such job."""
        if self._closed:
            raise DependencyUnavailable("database")
        self.counts.reads += 1
        if self._max_batch == 1:
            return cast(JobDoc | None, (await self._query([job_id])).get(job_id))
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Doc | None] = loop.create_future()
        waiters = self._waiting.get(job_id)
        if waiters is None:
            self._waiting[job_id] = [future]
        else:
            waiters.append(future)
        if not self._flush_scheduled and self._in_flight < self._max_in_flight:
            self._schedule_flush(loop)  # polls that arrive in this turn of the loop travel along
        timer = loop.call_later(self._timeout_s, _give_up, future)  # 1/7 of asyncio.timeout's cost
        try:
            return cast(JobDoc | None, await future)
        finally:
            timer.cancel()

    def _schedule_flush(self, loop: asyncio.AbstractEventLoop) -> None:
        self._flush_scheduled = True
        # An empty context: the queries belong to no single request (nor to its log lines).
        loop.call_soon(self._flush, context=contextvars.Context())

    def _flush(self) -> None:
        self._flush_scheduled = False
        loop = asyncio.get_running_loop()
        while self._waiting and self._in_flight < self._max_in_flight and not self._closed:
            if len(self._waiting) <= self._max_batch:
                taken, self._waiting = self._waiting, {}
            else:  # the longest waiting first
                ids = list(islice(self._waiting, self._max_batch))
                taken = {job_id: self._waiting.pop(job_id) for job_id in ids}
            # Ids whose callers have all gone away (disconnected, timed out) are not read.
            batch = {
                job_id: futures
                for job_id, futures in taken.items()
                if not all(future.done() for future in futures)
            }
            if not batch:
                continue
            self._in_flight += 1
            task = loop.create_task(self._query(list(batch)), context=contextvars.Context())
            self._tasks.add(task)  # the loop keeps only weak references to tasks
            # Answered in a done callback: it runs even for a task cancelled before it started.
            task.add_done_callback(partial(self._answer, batch))

    def _answer(self, batch: Batch, task: asyncio.Task[dict[str, Doc]]) -> None:
        self._tasks.discard(task)
        self._in_flight -= 1
        # A task cancelled (by aclose) before or while querying has no exception to hand on.
        failure = DependencyUnavailable("database") if task.cancelled() else task.exception()
        found = task.result() if failure is None else {}
        for job_id, futures in batch.items():
            for future in futures:
                if future.done():  # its caller went away or timed out
                    continue
                if failure is None:
                    future.set_result(found.get(job_id))
                else:
                    future.set_exception(_own_copy(failure))
        if self._waiting and not self._flush_scheduled and not self._closed:
            self._schedule_flush(asyncio.get_running_loop())

    async def _query(self, ids: list[str]) -> dict[str, Doc]:
        self.counts.queries += 1
        collection = self._collection()
        if len(ids) == 1:
            doc = await collection.find_one({"job_id": ids[0]}, self._projection)
            return {} if doc is None else {ids[0]: doc}
        docs = await collection.find({"job_id": {"$in": ids}}, self._projection).to_list(None)
        return {doc["job_id"]: doc for doc in docs}

    async def aclose(self) -> None:
        """Stop: what is waiting or running fails with ``DependencyUnavailable`` (a 503)."""
        self._closed = True
        waiting, self._waiting = self._waiting, {}
        for futures in waiting.values():
            for future in futures:
                if not future.done():
                    future.set_exception(DependencyUnavailable("database"))
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
