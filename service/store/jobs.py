"""The job store: the one place that writes job state, and every read of jobs.

``apply`` is the only method that changes a job's state: it applies a transition built by
``service/domain/lifecycle.py`` as one guarded atomic update. Everything else here reads, inserts
a new job, or deletes one. What a job wrote (pages, images, a chapter) is removed by
``service/store/discard.py``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from typing import Any, cast

from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError

from service.domain.cursor import Position
from service.domain.job import ACTIVE_STATUSES, JobStatus
from service.domain.lifecycle import Write
from service.store.collections import Collections
from service.store.documents import JobDoc

Doc = dict[str, Any]
ACTIVE = sorted(status.value for status in ACTIVE_STATUSES)
# A user's jobs newest first; job_id breaks ties (index user_id_created_at).
NEWEST_FIRST = [("created_at", -1), ("job_id", -1)]
# What a transition returns by default: enough for its caller to go on.
APPLIED_FIELDS = {
    "_id": 0,
    "job_id": 1,
    "user_id": 1,
    "status": 1,
    "lease_id": 1,
    "chapter_id": 1,
    "attempts": 1,
    "version": 1,
}

# What the sweeper, or a worker's successor, needs to hand back a job whose worker is gone.
HELD_FIELDS = {"job_id": 1, "lease_id": 1, "attempts": 1, "lost_runs": 1}


def after_position(position: Position) -> Doc:
    """The query part that continues after ``position`` in (created_at, job_id) descending order."""
    return {
        "$or": [
            {"created_at": {"$lt": position.created_at}},
            {"created_at": position.created_at, "job_id": {"$lt": position.job_id}},
        ]
    }


class JobStore:
    """``pdf_chapter_jobs``: one document per job."""

    def __init__(self, collections: Collections) -> None:
        self.collection = collections.jobs

    async def apply(self, write: Write, projection: dict[str, int] | None = None) -> JobDoc | None:
        """Apply one transition as one guarded atomic update: the job after it (``projection``'s
        fields), or None when its guard no longer held (another status, another lease), in
        which case nothing was written."""
        doc = await self.collection.find_one_and_update(
            write.filter,
            write.pipeline,
            projection=projection or APPLIED_FIELDS,
            return_document=ReturnDocument.AFTER,
        )
        return cast(JobDoc | None, doc)

    async def get(self, job_id: str, projection: dict[str, int]) -> JobDoc | None:
        """A job by its canonical id, whoever owns it (the caller checks)."""
        return cast(JobDoc | None, await self.collection.find_one({"job_id": job_id}, projection))

    async def get_owned(
        self, job_id: str, user_id: str, projection: dict[str, int]
    ) -> JobDoc | None:
        """The user's job by its canonical id, or None (unknown, or another user's)."""
        doc = await self.collection.find_one({"job_id": job_id, "user_id": user_id}, projection)
        return cast(JobDoc | None, doc)

    async def list(
        self,
        user_id: str,
        projection: dict[str, int],
        *,
        status: JobStatus | None = None,
        file_id: str | None = None,
        after: Position | None = None,
        offset: int = 0,
        limit: int,
    ) -> list[JobDoc]:
        """The user's jobs newest first, optionally of one status or one uploaded file,
        continuing after a cursor's ``Position`` or from ``offset``."""
        query: Doc = {"user_id": user_id, **(after_position(after) if after else {})}
        if status is not None:
            query["status"] = status.value
        if file_id is not None:
            query["file_id"] = file_id
        found = self.collection.find(query, projection).sort(NEWEST_FIRST).skip(offset)
        return cast(list[JobDoc], await found.limit(limit).to_list())

    async def by_idempotency_key(self, user_id: str, key: str) -> JobDoc | None:
        doc = await self.collection.find_one({"user_id": user_id, "idempotency_key": key})
        return cast(JobDoc | None, doc)

    async def insert(self, doc: Doc) -> bool:
        """Insert a new job; False when its idempotency key was taken meanwhile."""
        try:
            await self.collection.insert_one(doc)
        except DuplicateKeyError:
            if doc.get("idempotency_key") is None:
                raise
            return False
        return True

    async def count_active(self, user_id: str, at_most: int) -> int:
        """The user's pending and processing jobs, counted up to ``at_most`` (the index stops
        there)."""
        query = {"user_id": user_id, "status": {"$in": ACTIVE}}
        return await self.collection.count_documents(query, limit=at_most)

    async def count_running(self, user_id: str, at_most: int, *, besides: str = "") -> int:
        """The user's processing jobs (other than ``besides``), counted up to ``at_most``."""
        query = {
            "user_id": user_id,
            "status": JobStatus.processing.value,
            "job_id": {"$ne": besides},
        }
        return await self.collection.count_documents(query, limit=at_most)

    async def next_pending(self, user_id: str) -> str | None:
        """The id of the user's oldest pending job: the next one to run."""
        found = self.collection.find(
            {"user_id": user_id, "status": JobStatus.pending.value}, {"_id": 0, "job_id": 1}
        )
        docs = await found.sort([("created_at", 1), ("job_id", 1)]).limit(1).to_list()
        return str(docs[0]["job_id"]) if docs else None

    async def active_job_of_file(self, user_id: str, file_id: str) -> str | None:
        """The id of a pending or processing job that reads the user's file, if any."""
        doc = await self.collection.find_one(
            {"user_id": user_id, "file_id": file_id, "status": {"$in": ACTIVE}}, {"job_id": 1}
        )
        return None if doc is None else str(doc["job_id"])

    async def slug_asked(self, user_id: str, book_id: str, slug: str) -> bool:
        """Whether an active job of the book asks for ``slug``."""
        query = {"user_id": user_id, "book_id": book_id, "slug": slug, "status": {"$in": ACTIVE}}
        return bool(await self.collection.count_documents(query, limit=1))

    async def delete(self, job_id: str, user_id: str | None = None) -> bool:
        """Remove a job (the user's, when ``user_id`` is given); whether there was one."""
        query = {"job_id": job_id, **({"user_id": user_id} if user_id is not None else {})}
        return bool((await self.collection.delete_one(query)).deleted_count)

    async def count_by_status(self, max_time_ms: int = 2000) -> dict[str, int]:
        """How many jobs are in each status (every status present, zero or not)."""
        counts = {status.value: 0 for status in JobStatus}
        pipeline = [{"$group": {"_id": "$status", "n": {"$sum": 1}}}]
        async for row in await self.collection.aggregate(pipeline, maxTimeMS=max_time_ms):
            counts[str(row["_id"])] = int(row["n"])
        return counts

    # --- The sweeper's scans ------------------------------------------------------------------

    def stale(self, stale_before: datetime) -> AsyncIterator[Doc]:
        """Processing jobs whose heartbeat is older than ``stale_before``."""
        return aiter(
            self.collection.find(
                {"status": JobStatus.processing.value, "heartbeat_at": {"$lt": stale_before}},
                HELD_FIELDS,
            )
        )

    def held_by(
        self, worker_ids: Sequence[str], stale_before: datetime | None
    ) -> AsyncIterator[Doc]:
        """Processing jobs whose lease one of ``worker_ids`` opened (and, with ``stale_before``,
        whose heartbeat is older than that)."""
        query: Doc = {"status": JobStatus.processing.value, "worker_id": {"$in": [*worker_ids]}}
        if stale_before is not None:
            query["heartbeat_at"] = {"$lt": stale_before}
        return aiter(self.collection.find(query, HELD_FIELDS))

    def forgotten(self, rung_before: datetime) -> AsyncIterator[Doc]:
        """Pending jobs whose doorbell was last rung before ``rung_before``."""
        return aiter(
            self.collection.find(
                {"status": JobStatus.pending.value, "rung_at": {"$lt": rung_before}},
                {"job_id": 1, "rung_at": 1},
            )
        )

    def discard_pending(self, still_since: datetime, limit: int) -> AsyncIterator[Doc]:
        """Jobs whose output is still to be removed, still since ``still_since``, oldest first."""
        found = self.collection.find(
            {"discard_pending": True, "updated_at": {"$lt": still_since}}, {"job_id": 1}
        )
        return aiter(found.sort("updated_at", 1).limit(limit))
