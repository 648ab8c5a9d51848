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
from datetime import datetime
from typing import Any

from pymongo import ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection

from service.models import NEXT_VERSION, JobStatus, bump_pipeline, utcnow
from service.stages import StageStatus, finish_stages, started_stages

Doc = dict[str, Any]

FAILED_PREFIX = "PDF processing failed: "


def _bump(fields: Doc, now: datetime | None = None) -> Doc:
    """``$set`` the fields with a fresh ``updated_at`` and ``$inc`` the version."""
    return {"$set": {**fields, "updated_at": now or utcnow()}, "$inc": {"version": 1}}


def _literal(value: Any) -> Doc:
    """A value in an update pipeline: a message starting with ``$`` must not read a field."""
    return {"$literal": value}


async def claim(jobs: AsyncCollection[Doc], job_id: str, message: str) -> Doc | None:
    """Take a pending job (``pending -> processing``); None when someone else has it.

    Several workers may be told about the same job: only the one whose update matches runs it.
    The stages start over with the download.
    """
    now = utcnow()
    # A pipeline update, so that the first start survives retries (started_at is null until then).
    update = bump_pipeline(
        {
            "status": JobStatus.processing.value,
            # A resumed job keeps showing where the last attempt got to (see advance).
            "message": {
                "$cond": [
                    {"$gt": [{"$ifNull": ["$progress", 0]}, 0]},
                    "$message",
                    _literal(message),
                ]
            },
            "stages": _literal(started_stages(now)),
            "heartbeat_at": now,
            "started_at": {"$ifNull": ["$started_at", now]},
            "attempts": {"$add": [{"$ifNull": ["$attempts", 0]}, 1]},
        },
        now,
    )
    doc: Doc | None = await jobs.find_one_and_update(
        {"job_id": job_id, "status": JobStatus.pending.value},
        update,
        return_document=ReturnDocument.AFTER,
    )
    return doc


async def advance(
    jobs: AsyncCollection[Doc],
    job_id: str,
    progress: int,
    message: str,
    fields: Doc | None = None,
) -> bool:
    """Record progress and stage ``fields``; False when the job is no longer processing.

    Progress never goes backwards: a resumed job (released, then claimed again) keeps showing
    where the last attempt got to until this one passes it, and its message with it. The stage
    and page fields of this attempt are written whatever the progress.
    """
    now = utcnow()
    current = {"$ifNull": ["$progress", 0]}
    behind = {"$gt": [current, progress]}
    update: Doc = {
        "progress": {"$max": [current, progress]},
        "message": {"$cond": [behind, "$message", _literal(message)]},
        "heartbeat_at": now,
        **{name: _literal(value) for name, value in (fields or {}).items()},
    }
    if fields:
        pipeline = bump_pipeline(update, now)
    else:  # nothing a client sees changes while behind: keep the version (the ETag) too
        update["version"] = {"$cond": [behind, {"$ifNull": ["$version", 0]}, NEXT_VERSION]}
        update["updated_at"] = {"$cond": [behind, "$updated_at", now]}
        pipeline = [{"$set": update}]
    result = await jobs.update_one(
        {"job_id": job_id, "status": JobStatus.processing.value}, pipeline
    )
    return bool(result.matched_count)


async def complete(
    jobs: AsyncCollection[Doc], job_id: str, result: Doc, message: str, fields: Doc | None = None
) -> bool:
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
            **(fields or {}),
        },
        now,
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
    """``pending|processing -> failed``, keeping progress where it stopped (seed 002).

    The stage under way is marked failed and the ones after it skipped.
    """
    now = utcnow()
    outcome = await jobs.update_one(
        {
            "job_id": job_id,
            "status": {"$in": [JobStatus.pending.value, JobStatus.processing.value]},
            **(guard or {}),
        },
        bump_pipeline(
            {
                "status": JobStatus.failed.value,
                "message": _literal(FAILED_PREFIX + reason),
                "error": _literal(reason),
                "error_code": _literal(code),
                "failed_at": now,
                "stages": finish_stages(
                    {
                        StageStatus.processing: StageStatus.failed,
                        StageStatus.pending: StageStatus.skipped,
                    },
                    now,
                ),
            },
            now,
        ),
    )
    return bool(outcome.matched_count)


async def release(jobs: AsyncCollection[Doc], job_id: str, *, guard: Doc | None = None) -> bool:
    """``processing -> pending``: give a job back to be resumed (worker stopping, or lost).

    Progress is kept; the next claim starts the pages again and their upserts do not duplicate.
    """
    outcome = await jobs.update_one(
        {"job_id": job_id, "status": JobStatus.processing.value, **(guard or {})},
        bump_pipeline(
            {
                "status": JobStatus.pending.value,
                "rung_at": utcnow(),
                "stages": finish_stages({StageStatus.processing: StageStatus.pending}),
            }
        ),
    )
    return bool(outcome.matched_count)


async def record_page_errors(jobs: AsyncCollection[Doc], job_id: str, errors: list[Doc]) -> None:
    """Pages that could not be read, stamped; a retried job does not list a page twice."""
    now = utcnow()
    known = {"$ifNull": ["$page_errors", []]}
    fresh = {
        "$filter": {
            "input": _literal([{**error, "timestamp": now} for error in errors]),
            "as": "new",
            "cond": {
                "$not": [
                    {"$in": ["$$new.page_number", {"$ifNull": ["$page_errors.page_number", []]}]}
                ]
            },
        }
    }
    await jobs.update_one(
        {"job_id": job_id, "status": JobStatus.processing.value},
        bump_pipeline({"page_errors": {"$concatArrays": [known, fresh]}}),
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
    _pending: tuple[int, str, Doc | None] | None = field(default=None, init=False)
    _alive: bool = field(default=True, init=False)

    async def report(
        self, progress: int, message: str, fields: Doc | None = None, *, force: bool = False
    ) -> bool:
        self._pending = (progress, message, fields)
        if force or self.clock() - self._last_write >= self.interval_s:
            await self.flush()
        return self._alive

    async def flush(self) -> bool:
        """Write the last reported progress, if it was not written yet."""
        if self._pending is not None:
            progress, message, fields = self._pending
            self._pending = None
            self._alive = await advance(self.jobs, self.job_id, progress, message, fields)
            self._last_write = self.clock()
            self.writes += 1
        return self._alive
