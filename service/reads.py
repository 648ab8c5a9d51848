"""Polling reads, coalesced: the polls one API process has in flight share MongoDB queries.

Browsers poll each job every couple of seconds, so a busy API process always has many polls
waiting on MongoDB at once. Each ``find_one`` costs the driver several times more CPU than it
costs MongoDB to find the document (server selection, a session, a cursor, two asyncio tasks per
reply), and that driver cost is most of the polling endpoint's CPU. So ``JobReader`` sends the
reads that pile up together as one ``find({"job_id": {"$in": [...]}})`` and hands each caller its
own document; with nothing else in flight a read is sent at once, as a plain ``find_one``.

Nothing gets staler: a read only ever joins a query that has not been sent yet, so every caller
sees the job as it was after its request arrived (the same guarantee as its own ``find_one``). A
failed query fails each of its callers with the driver's error, which the handlers map to 503 as
before; a caller that goes away (client disconnect) leaves the others unaffected.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from pymongo.asynchronous.collection import AsyncCollection

Doc = dict[str, Any]
log = logging.getLogger("service.reads")


class ReadCounts:
    """How many reads were asked for and how many queries served them (``/metrics``)."""

    __slots__ = ("queries", "reads")

    def __init__(self) -> None:
        self.reads = 0
        self.queries = 0


class JobReader:
    """Reads job documents by ``job_id`` with one projection, coalescing concurrent reads.

    At most ``max_in_flight`` queries run at once and each carries at most ``max_batch`` ids;
    reads that arrive meanwhile wait for the next query, which is sent as soon as one returns.
    With ``max_batch=1`` nothing is coalesced: each read is its own ``find_one``.
    """

    def __init__(
        self,
        collection: Callable[[], AsyncCollection[Doc]],
        projection: dict[str, int],
        *,
        max_batch: int = 100,
        max_in_flight: int = 2,
        counts: ReadCounts | None = None,
    ) -> None:
        if max_batch < 1 or max_in_flight < 1:
            raise ValueError("max_batch and max_in_flight must be at least 1")
        self._collection = collection
        self._projection = {**projection, "job_id": 1}  # needed to hand documents back
        self._max_batch = max_batch
        self._max_in_flight = max_in_flight
        self.counts = counts if counts is not None else ReadCounts()
        self._waiting: dict[str, list[asyncio.Future[Doc | None]]] = {}
        self._flush_scheduled = False
        self._in_flight = 0
        self._tasks: set[asyncio.Task[None]] = set()

    async def read(self, job_id: str) -> Doc | None:
        """The job's document (projected), or None when there is no such job."""
        self.counts.reads += 1
        if self._max_batch == 1:
            return (await self._query([job_id])).get(job_id)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Doc | None] = loop.create_future()
        waiters = self._waiting.get(job_id)
        if waiters is None:
            self._waiting[job_id] = [future]
        else:
            waiters.append(future)
        if not self._flush_scheduled and self._in_flight < self._max_in_flight:
            # Sent on the loop's next turn: polls that arrived in this one travel together.
            self._flush_scheduled = True
            loop.call_soon(self._flush)
        return await future

    def _flush(self) -> None:
        self._flush_scheduled = False
        loop = asyncio.get_running_loop()
        while self._waiting and self._in_flight < self._max_in_flight:
            if len(self._waiting) <= self._max_batch:
                batch, self._waiting = self._waiting, {}
            else:
                ids = list(self._waiting)[: self._max_batch]
                batch = {job_id: self._waiting.pop(job_id) for job_id in ids}
            self._in_flight += 1
            task = loop.create_task(self._fetch(batch))
            self._tasks.add(task)  # the loop keeps only weak references to tasks
            task.add_done_callback(self._tasks.discard)

    async def _fetch(self, batch: dict[str, list[asyncio.Future[Doc | None]]]) -> None:
        try:
            found = await self._query(list(batch))
        except asyncio.CancelledError:
            for futures in batch.values():
                for future in futures:
                    future.cancel()
            raise
        except Exception as exc:
            for futures in batch.values():
                for future in futures:
                    if not future.done():
                        future.set_exception(exc)
        else:
            for job_id, futures in batch.items():
                doc = found.get(job_id)
                for future in futures:
                    if not future.done():
                        future.set_result(doc)
        finally:
            self._in_flight -= 1
            if self._waiting and not self._flush_scheduled:
                self._flush_scheduled = True
                asyncio.get_running_loop().call_soon(self._flush)

    async def _query(self, ids: list[str]) -> dict[str, Doc]:
        self.counts.queries += 1
        collection = self._collection()
        if len(ids) == 1:
            doc = await collection.find_one({"job_id": ids[0]}, self._projection)
            return {} if doc is None else {ids[0]: doc}
        docs = await collection.find({"job_id": {"$in": ids}}, self._projection).to_list(None)
        return {doc["job_id"]: doc for doc in docs}

    async def aclose(self) -> None:
        """Cancel what is waiting or running (its callers get ``CancelledError``)."""
        waiting, self._waiting = self._waiting, {}
        for futures in waiting.values():
            for future in futures:
                future.cancel()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
