"""The one place that writes job state: atomic, guarded partial updates.

Every write is a single ``update_one``/``find_one_and_update`` whose filter states the transition
it expects (``pending -> processing``, progress only forward, terminal states final), and every
write bumps ``version`` (the polling ETag) and ``updated_at``. A write whose guard no longer holds
changes nothing and reports it, so a worker learns that its job was cancelled or taken over.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pymongo import ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection

from service.models import JobStatus, utcnow

Doc = dict[str, Any]

FAILED_PREFIX = "PDF processing failed: "


def _bump(fields: Doc) -> Doc:
    """``$set`` the fields with a fresh ``updated_at`` and ``$inc`` the version."""
    return {"$set": {**fields, "updated_at": utcnow()}, "$inc": {"version": 1}}


async def claim(jobs: AsyncCollection[Doc], job_id: str, message: str) -> Doc | None:
    """Take a pending job (``pending -> processing``); None when someone else has it.

    Several workers may be told about the same job: only the one whose update matches runs it.
    """
    now = utcnow()
    # A pipeline update, so that the first start survives retries (started_at is null until then).
    update = [
        {
            "$set": {
                "status": JobStatus.processing.value,
                "message": message,
                "heartbeat_at": now,
                "updated_at": now,
                "started_at": {"$ifNull": ["$started_at", now]},
                "attempts": {"$add": [{"$ifNull": ["$attempts", 0]}, 1]},
                "version": {"$add": [{"$ifNull": ["$version", 0]}, 1]},
            }
        }
    ]
    doc: Doc | None = await jobs.find_one_and_update(
        {"job_id": job_id, "status": JobStatus.pending.value},
        update,
        return_document=ReturnDocument.AFTER,
    )
    return doc


async def advance(jobs: AsyncCollection[Doc], job_id: str, progress: int, message: str) -> bool:
    """Record progress, never backwards; False when the job is no longer processing."""
    now = utcnow()
    result = await jobs.update_one(
        {"job_id": job_id, "status": JobStatus.processing.value, "progress": {"$lte": progress}},
        _bump({"progress": progress, "message": message, "heartbeat_at": now}),
    )
    if result.matched_count:
        return True
    # Nothing matched: either progress would go backwards (still ours) or the job left processing.
    still_ours = await jobs.count_documents(
        {"job_id": job_id, "status": JobStatus.processing.value}, limit=1
    )
    return bool(still_ours)


async def complete(jobs: AsyncCollection[Doc], job_id: str, result: Doc, message: str) -> bool:
    """``processing -> completed`` with the result; False if the job was no longer processing."""
    now = utcnow()
    update = _bump(
        {
            "status": JobStatus.completed.value,
            "progress": 100,
            "message": message,
            "result": result,
            "completed_at": now,
            "heartbeat_at": now,
        }
    )
    update["$unset"] = {"error": "", "failed_at": ""}
    outcome = await jobs.update_one(
        {"job_id": job_id, "status": JobStatus.processing.value}, update
    )
    return bool(outcome.matched_count)


async def fail(
    jobs: AsyncCollection[Doc],
    job_id: str,
    reason: str,
    code: str = "INTERNAL",
    *,
    guard: Doc | None = None,
) -> bool:
    """``pending|processing -> failed``, keeping progress where it stopped (seed 002)."""
    now = utcnow()
    outcome = await jobs.update_one(
        {
            "job_id": job_id,
            "status": {"$in": [JobStatus.pending.value, JobStatus.processing.value]},
            **(guard or {}),
        },
        _bump(
            {
                "status": JobStatus.failed.value,
                "message": FAILED_PREFIX + reason,
                "error": reason,
                "error_code": code,
                "failed_at": now,
            }
        ),
    )
    return bool(outcome.matched_count)


async def release(jobs: AsyncCollection[Doc], job_id: str, *, guard: Doc | None = None) -> bool:
    """``processing -> pending``: give a job back to be resumed (worker stopping, or lost).

    Progress is kept; the next claim starts the pages again and their upserts do not duplicate.
    """
    outcome = await jobs.update_one(
        {"job_id": job_id, "status": JobStatus.processing.value, **(guard or {})},
        _bump({"status": JobStatus.pending.value, "rung_at": utcnow()}),
    )
    return bool(outcome.matched_count)


async def record_page_errors(jobs: AsyncCollection[Doc], job_id: str, errors: list[Doc]) -> None:
    """Pages that could not be read; ``$addToSet`` so a retried job does not list them twice."""
    await jobs.update_one(
        {"job_id": job_id, "status": JobStatus.processing.value},
        {
            "$addToSet": {"page_errors": {"$each": errors}},
            "$set": {"updated_at": utcnow()},
            "$inc": {"version": 1},
        },
    )


async def beat(jobs: AsyncCollection[Doc], job_id: str) -> bool:
    """Refresh the heartbeat of a job this worker holds; False once it is no longer processing.

    Liveness, not state: it does not change what a client sees, so the version stays.
    """
    outcome = await jobs.update_one(
        {"job_id": job_id, "status": JobStatus.processing.value},
        {"$set": {"heartbeat_at": utcnow()}},
    )
    return bool(outcome.matched_count)


async def mark_rung(jobs: AsyncCollection[Doc], job_id: str, rung_before: Any) -> bool:
    """Note that a pending job's doorbell was rung again; False if another sweeper just did."""
    outcome = await jobs.update_one(
        {"job_id": job_id, "status": JobStatus.pending.value, "rung_at": rung_before},
        {"$set": {"rung_at": utcnow()}},
    )
    return bool(outcome.matched_count)


@dataclass
class ProgressWriter:
    """Throttles progress writes for one job: at most one per ``interval_s``, the last always.

    ``report`` returns False once the job has left ``processing`` (cancelled, failed elsewhere),
    which tells the page loop to stop.
    """

    jobs: AsyncCollection[Doc]
    job_id: str
    interval_s: float = 0.25
    clock: Callable[[], float] = time.monotonic
    writes: int = 0
    _last_write: float = field(default=float("-inf"), init=False)
    _pending: tuple[int, str] | None = field(default=None, init=False)
    _alive: bool = field(default=True, init=False)

    async def report(self, progress: int, message: str, *, force: bool = False) -> bool:
        self._pending = (progress, message)
        if force or self.clock() - self._last_write >= self.interval_s:
            await self.flush()
        return self._alive

    async def flush(self) -> bool:
        """Write the last reported progress, if it was not written yet."""
        if self._pending is not None:
            progress, message = self._pending
            self._pending = None
            self._alive = await advance(self.jobs, self.job_id, progress, message)
            self._last_write = self.clock()
            self.writes += 1
        return self._alive
