"""Worker liveness: one record per worker identity in ``workers``, beaten while it lives.

    {_id: "host/slot", incarnation, host, slot, pid, started_at, beat_at, stopped_at, expires_at}

(``slot`` is null for a worker that could lock no slot: its id then names its incarnation.)

A worker registers at start-up and beats every ``WORKER_STALE_S / 4``; the leases it opens carry
its id (``worker_id`` on the job). A record whose beat is older than ``WORKER_STALE_S`` (or that
says its worker stopped) is stale: the sweeper then hands back that worker's jobs without
waiting ``STALE_AFTER_S`` for each job's own heartbeat. Times are MongoDB's (``$$NOW``), written
and judged on one clock, so the workers' clocks need not agree.

A record is removed by MongoDB's TTL monitor ``RECORD_KEPT_S`` after its last beat (index
``expires_at_ttl``), long after every job of its worker was handed back: until then it tells an
operator which worker died and when.
"""

from __future__ import annotations

from typing import Any

from pymongo import ReturnDocument

from service.store.collections import Collections

Doc = dict[str, Any]

# How long the record of a worker that stopped beating is kept (one day): the TTL index removes
# it then. Judging staleness never waits for this: it reads beat_at.
RECORD_KEPT_S = 86_400


def _now_plus(seconds: float) -> Doc:
    return {"$add": ["$$NOW", int(seconds * 1000)]}


class Workers:
    """``workers``: who is alive, on MongoDB's clock."""

    def __init__(self, collections: Collections) -> None:
        self._workers = collections.workers

    async def register(
        self, worker_id: str, incarnation: str, *, host: str, slot: int | None, pid: int
    ) -> Doc | None:
        """Take the record of ``worker_id`` for this incarnation, beating now; the record of the
        previous incarnation in this slot, if there was one."""
        fields = {
            "incarnation": incarnation,
            "host": host,
            "slot": slot,
            "pid": pid,
            "started_at": "$$NOW",
            "beat_at": "$$NOW",
            "stopped_at": None,
            "expires_at": _now_plus(RECORD_KEPT_S),
        }
        before: Doc | None = await self._workers.find_one_and_update(
            {"_id": worker_id},
            [{"$set": fields}],
            upsert=True,
            return_document=ReturnDocument.BEFORE,
        )
        return before

    async def beat(self, worker_id: str, incarnation: str) -> bool:
        """This incarnation is alive; False when the record is another incarnation's now."""
        result = await self._workers.update_one(
            {"_id": worker_id, "incarnation": incarnation},
            [{"$set": {"beat_at": "$$NOW", "expires_at": _now_plus(RECORD_KEPT_S)}}],
        )
        return result.matched_count == 1

    async def stopped(self, worker_id: str, incarnation: str) -> None:
        """This incarnation stopped: its record is stale at once (its jobs were handed back; any
        it could not hand back go at the next sweep)."""
        await self._workers.update_one(
            {"_id": worker_id, "incarnation": incarnation}, [{"$set": {"stopped_at": "$$NOW"}}]
        )

    async def stale(self, stale_after_s: float) -> list[str]:
        """The ids of workers that stopped, or have not beaten for ``stale_after_s``."""
        quiet = {"$lt": ["$beat_at", {"$subtract": ["$$NOW", int(stale_after_s * 1000)]}]}
        found = self._workers.find(
            {"$or": [{"stopped_at": {"$type": "date"}}, {"$expr": quiet}]}, {"_id": 1}
        )
        return [str(doc["_id"]) async for doc in found]
