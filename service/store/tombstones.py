"""Tombstones of deleted jobs: what a run still writing for a deleted job must not leave behind.

    {_id: job_id, chapter_id, user_id, deleted_at, swept, expires_at}

Deleting a job removes its output and then the job itself; a run that was writing for it learns
of it at its next write (or heartbeat) and removes what it wrote since. A run that dies first
would leave those pages and images with no job to find them by. So a job deleted without a
chapter leaves a tombstone, written before the job goes: the run reads it to know the job was
deleted, and the sweeper removes the job's output once more ``STALE_AFTER_S`` after the deletion
(by then every run of the job has stopped, or its heartbeat is stale), then marks it swept.
MongoDB removes the tombstone itself ``TOMBSTONE_KEPT_S`` later (index ``expires_at_ttl``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

from service.store.collections import Collections

Doc = dict[str, Any]

# A day: far longer than any run outlives its job's deletion (a paused worker's run stops at its
# first heartbeat after it wakes), and what a run writes in that time is removed by the run.
TOMBSTONE_KEPT_S = 86_400


class Tombstones:
    """``tombstones``: deleted jobs whose output a late run may still write."""

    def __init__(self, collections: Collections) -> None:
        self._tombstones = collections.tombstones

    async def bury(self, job_id: str, user_id: str, chapter_id: str | None, now: datetime) -> None:
        """Record that ``job_id`` is being deleted (idempotent: a repeated delete keeps the
        first time)."""
        await self._tombstones.update_one(
            {"_id": job_id},
            {
                "$setOnInsert": {
                    "user_id": user_id,
                    "chapter_id": chapter_id,
                    "deleted_at": now,
                    "swept": False,
                    "expires_at": now + timedelta(seconds=TOMBSTONE_KEPT_S),
                }
            },
            upsert=True,
        )

    async def of(self, job_id: str) -> Doc | None:
        """The tombstone of ``job_id``, if it was deleted (and the tombstone has not expired)."""
        doc: Doc | None = await self._tombstones.find_one({"_id": job_id})
        return doc

    def due(self, deleted_before: datetime, limit: int) -> AsyncIterator[Doc]:
        """Tombstones not swept yet of jobs deleted before ``deleted_before``, oldest first."""
        found = self._tombstones.find(
            {"swept": False, "deleted_at": {"$lt": deleted_before}}, {"chapter_id": 1}
        )
        return aiter(found.sort("deleted_at", 1).limit(limit))

    async def swept(self, job_id: str) -> None:
        """The job's output was removed after every run of it stopped: not swept again."""
        await self._tombstones.update_one({"_id": job_id}, {"$set": {"swept": True}})
