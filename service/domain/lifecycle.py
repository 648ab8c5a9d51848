"""The job state machine: every allowed transition, its guard and the fields it writes.

                 claim                    complete
    pending ─────────────▶ processing ─────────────▶ completed
       ▲  ▲                 │  │  │ ▲
       │  └─── release ─────┘  │  │ └── advance, beat (same run, same lease)
       │       (worker stops,  │  │
       │        or its worker  │  └──── fail ──────▶ failed   (the PDF cannot be processed)
       │        is dead)       └─────── lose ──────▶ failed   (its worker dead, no tries left)
       │
       └── ring (sweeper: the doorbell was lost)
    pending | processing ─── cancel (the owner) ───▶ cancelled
    failed | cancelled ─── discarded (its output removed) ───▶ the same status
    completed ─── indexed (its chapter's search index moved on) ───▶ completed
    completed ─── chapter_deleted (the owner deleted its chapter) ───▶ completed

A **lease** is opened by every claim: a fresh ``lease_id`` stored on the job. Every later write of
that run (advance, beat, complete, fail, release) is guarded by it, so a run whose lease is gone
(the sweeper took the job back while the worker was paused, and another run claimed it) changes
nothing: its write matches no document and it stops. The sweeper's own writes are guarded by the
lease it saw *and* by the heartbeat still being stale, in the same atomic filter.

A lease also names the **worker** that holds it (``worker_id``: host and slot, see
``worker/identity.py``), so that the jobs of a worker known to be dead (its liveness record stale,
or a successor started in its slot) are handed back without waiting for each job's own heartbeat
to go stale. A release or a loss judged by the sweeper or a successor counts in ``lost_runs``:
``JOB_MAX_ATTEMPTS`` bounds the runs a job may lose to dead workers, not the times a stopping
worker handed it back.

A job that ends without a chapter (``fail``, ``lose``, ``cancel``) is marked ``discard_pending``
until what it wrote (pages, images, a chapter) is gone: its run removes it when it stops, and the
sweeper removes what a dead run or an unreachable page store left (``discarded`` clears the mark).

This module is pure: it builds a ``Write`` (a filter and an update pipeline) for each transition,
and ``service/store/jobs.py`` applies it as one atomic update. Every write that changes what
a client sees bumps ``version`` (the polling ETag) and ``updated_at`` here, one way.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from service.domain.job import (
    CANCELLED_MESSAGE,
    ENQUEUED_MESSAGE,
    FAILED_PREFIX,
    JobStatus,
    new_id,
)
from service.domain.stages import (
    Stage,
    StageStatus,
    finish_stages,
    stage_fields,
    started_stages,
)

Doc = dict[str, Any]


class Transition(StrEnum):
    claim = "claim"
    advance = "advance"
    beat = "beat"
    complete = "complete"
    fail = "fail"
    release = "release"
    lose = "lose"
    cancel = "cancel"
    ring = "ring"
    discarded = "discarded"
    indexed = "indexed"
    chapter_deleted = "chapter_deleted"


class Guard(StrEnum):
    """What, besides the status, a transition's filter requires."""

    none = "none"  # only the status (claim: whoever matches first wins)
    lease = "lease"  # the run's own lease
    # The lease the sweeper saw, with its heartbeat still stale; or, for the successor started in
    # a dead worker's slot, that lease alone (the dead worker can no longer write).
    stale_lease = "stale_lease"
    owner = "owner"  # the job's user
    rung_at = "rung_at"  # the doorbell time the sweeper saw (one sweeper rings once)


@dataclass(frozen=True, slots=True)
class Rule:
    sources: frozenset[JobStatus]
    target: JobStatus | None  # None: the job keeps its status
    guard: Guard
    visible: bool = True  # changes what a client sees: bumps version and updated_at


P, R = JobStatus.pending, JobStatus.processing

RULES: dict[Transition, Rule] = {
    Transition.claim: Rule(frozenset({P}), R, Guard.none),
    Transition.advance: Rule(frozenset({R}), R, Guard.lease),
    Transition.beat: Rule(frozenset({R}), R, Guard.lease, visible=False),
    Transition.complete: Rule(frozenset({R}), JobStatus.completed, Guard.lease),
    Transition.fail: Rule(frozenset({R}), JobStatus.failed, Guard.lease),
    # Released by its own run (worker stopping), by the sweeper once the lease went stale or its
    # worker's record did, or by the worker started in the slot of the dead one holding it.
    Transition.release: Rule(frozenset({R}), P, Guard.lease),
    Transition.lose: Rule(frozenset({R}), JobStatus.failed, Guard.stale_lease),
    Transition.cancel: Rule(frozenset({P, R}), JobStatus.cancelled, Guard.owner),
    Transition.ring: Rule(frozenset({P}), P, Guard.rung_at, visible=False),
    # Not a change of status: the output of a job that ended without a chapter is gone.
    Transition.discarded: Rule(
        frozenset({JobStatus.failed, JobStatus.cancelled}), None, Guard.none, visible=False
    ),
    # Not a change of status either: the index_vectors stage of a completed job moved on. The
    # book-jobs view does not show stages, so its version (the ETag) stays.
    Transition.indexed: Rule(frozenset({JobStatus.completed}), None, Guard.none, visible=False),
    # Nor this: the chapter the job made was deleted. Visible: every view of the job says so.
    Transition.chapter_deleted: Rule(frozenset({JobStatus.completed}), None, Guard.owner),
}


def allowed(transition: Transition, status: JobStatus) -> bool:
    """Whether ``transition`` may leave a job in ``status``."""
    return status in RULES[transition].sources


def leads_to(transition: Transition, status: JobStatus) -> JobStatus:
    """The status a job in ``status`` has after ``transition`` (which it must allow)."""
    return RULES[transition].target or status


# Pages whose errors a job lists (the first ones reported), and how much of each error; every
# page with a problem is counted besides (``advance``). Ten entries of 120 characters keep the
# ingestion-status view, which shows them twice, under 5 KB.
MAX_LISTED_PAGE_ERRORS = 10
PAGE_ERROR_CHARS = 120

# Update-pipeline expression for the next ``version`` (documents may predate the field).
NEXT_VERSION = {"$add": [{"$ifNull": ["$version", 0]}, 1]}


def literal(value: Any) -> Doc:
    """A value in an update pipeline: a string starting with ``$`` must not read a field."""
    return {"$literal": value}


@dataclass(frozen=True, slots=True)
class Write:
    """One guarded atomic update of one job: apply it with ``job_store.apply``."""

    transition: Transition
    filter: Doc
    pipeline: list[Doc]
    lease_id: str | None = None  # the lease a claim opened


def _write(
    transition: Transition,
    job_id: str,
    now: datetime,
    fields: Doc,
    *,
    guard: Doc | None = None,
    version: Any = None,
    lease_id: str | None = None,
) -> Write:
    rule = RULES[transition]
    sources = sorted(status.value for status in rule.sources)
    query: Doc = {
        "job_id": job_id,
        "status": sources[0] if len(sources) == 1 else {"$in": sources},
        **(guard or {}),
    }
    update: Doc = dict(fields)
    if rule.target is not None and rule.target not in rule.sources:
        update["status"] = rule.target.value
    if rule.visible:
        update["updated_at"] = now if version is None else {"$cond": [version, now, "$updated_at"]}
        update["version"] = (
            NEXT_VERSION
            if version is None
            else {"$cond": [version, NEXT_VERSION, {"$ifNull": ["$version", 0]}]}
        )
    return Write(transition, query, [{"$set": update}], lease_id=lease_id)


def _lease(lease_id: str) -> Doc:
    return {"lease_id": lease_id}


def claim(job_id: str, message: str, now: datetime, worker_id: str | None = None) -> Write:
    """``pending -> processing``, opening a new lease held by ``worker_id``. The stages start over
    with the download; a resumed job keeps showing where the last attempt got to (see
    ``advance``). The chapter id is fixed at the first claim, so every retry converges on the
    same chapter."""
    lease_id = new_id()
    fields = {
        "lease_id": lease_id,
        "worker_id": literal(worker_id),
        "message": {
            "$cond": [{"$gt": [{"$ifNull": ["$progress", 0]}, 0]}, "$message", literal(message)]
        },
        "stages": literal(started_stages(now)),
        "heartbeat_at": now,
        "started_at": {"$ifNull": ["$started_at", now]},
        "attempts": {"$add": [{"$ifNull": ["$attempts", 0]}, 1]},
        "chapter_id": {"$ifNull": ["$chapter_id", new_id()]},
    }
    return _write(Transition.claim, job_id, now, fields, lease_id=lease_id)


def advance(
    job_id: str,
    lease_id: str,
    progress: int,
    message: str,
    now: datetime,
    fields: Doc | None = None,
    page_errors: list[Doc] | None = None,
    *,
    pages_processed: int | None = None,
) -> Write:
    """Progress and stage ``fields`` of the run holding ``lease_id``.

    Progress never goes backwards, nor does ``pages_processed``: a resumed job keeps showing
    where the last attempt got to until this one passes it, and its message with it ("Processed
    i/n pages..." at the same percentage keeps the larger i). Stage and page fields of this
    attempt are written whatever the progress. With nothing else to write, a write that is
    behind changes nothing a client sees, so it keeps the version (the ETag) too.

    ``page_errors`` (``{page_number, error, ...}``) are listed, stamped, without listing a page
    twice across retries, up to ``MAX_LISTED_PAGE_ERRORS`` of ``PAGE_ERROR_CHARS`` each; every
    page with a problem is counted (``page_errors_total``, over the set ``page_error_pages``),
    listed or not. So the job document stays small whatever a PDF does: a 1,600-page PDF whose
    every page warned 60 times made it 16 MB, and MongoDB refused the update.
    """
    current = {"$ifNull": ["$progress", 0]}
    behind: Doc = {"$gt": [current, progress]}
    update: Doc = {
        "progress": {"$max": [current, progress]},
        "heartbeat_at": now,
        **{name: literal(value) for name, value in (fields or {}).items()},
    }
    if pages_processed is not None:
        done = {"$ifNull": ["$pages_processed", 0]}
        # At the same percentage, the message already written counts as far when it counts at
        # least as many pages: "Processed 14/6000" stays until a run has 15 stored.
        behind = {
            "$or": [
                behind,
                {"$and": [{"$eq": [current, progress]}, {"$gte": [done, pages_processed]}]},
            ]
        }
        update["pages_processed"] = {"$max": [done, pages_processed]}
    update["message"] = {"$cond": [behind, "$message", literal(message)]}
    then: list[Doc] = []  # pipeline stages after the $set: what reads its result
    if page_errors:
        listed = [
            {**error, "error": str(error["error"])[:PAGE_ERROR_CHARS], "timestamp": now}
            for error in page_errors[:MAX_LISTED_PAGE_ERRORS]
        ]
        known = {"$ifNull": ["$page_errors", []]}
        fresh = {
            "$filter": {
                "input": literal(listed),
                "as": "new",
                "cond": {
                    "$not": [
                        {
                            "$in": [
                                "$$new.page_number",
                                {"$ifNull": ["$page_errors.page_number", []]},
                            ]
                        }
                    ]
                },
            }
        }
        update["page_errors"] = {
            "$slice": [{"$concatArrays": [known, fresh]}, MAX_LISTED_PAGE_ERRORS]
        }
        numbers = sorted({int(error["page_number"]) for error in page_errors})
        update["page_error_pages"] = {
            "$setUnion": [{"$ifNull": ["$page_error_pages", []]}, literal(numbers)]
        }
        then.append({"$set": {"page_errors_total": {"$size": "$page_error_pages"}}})
    version = None if fields or page_errors else {"$not": [behind]}
    write = _write(Transition.advance, job_id, now, update, guard=_lease(lease_id), version=version)
    write.pipeline.extend(then)
    return write


def beat(job_id: str, lease_id: str, now: datetime) -> Write:
    """Liveness of the run holding ``lease_id``: not state, so the version stays."""
    return _write(Transition.beat, job_id, now, {"heartbeat_at": now}, guard=_lease(lease_id))


def complete(
    job_id: str, lease_id: str, result: Doc, message: str, now: datetime, fields: Doc | None = None
) -> Write:
    """``processing -> completed`` with the result."""
    update = {
        "progress": 100,
        "message": literal(message),
        "result": literal(result),
        "completed_at": now,
        "heartbeat_at": now,
        **{name: literal(value) for name, value in (fields or {}).items()},
    }
    write = _write(Transition.complete, job_id, now, update, guard=_lease(lease_id))
    write.pipeline.append({"$unset": ["error", "failed_at"]})
    return write


def _failed(reason: str, code: str, now: datetime) -> Doc:
    """Fields of a failed job; progress stays where it stopped (the book-jobs contract). The
    stage under way is marked failed and the ones after it skipped."""
    return {
        "discard_pending": True,
        "message": literal(FAILED_PREFIX + reason),
        "error": literal(reason),
        "error_code": literal(code),
        "failed_at": now,
        "stages": finish_stages(
            {StageStatus.processing: StageStatus.failed, StageStatus.pending: StageStatus.skipped},
            now,
        ),
    }


def fail(job_id: str, lease_id: str, reason: str, code: str, now: datetime) -> Write:
    """``processing -> failed``: the run holding the lease found the PDF cannot be processed."""
    return _write(Transition.fail, job_id, now, _failed(reason, code, now), guard=_lease(lease_id))


def _stale(lease_id: str | None, stale_before: datetime | None) -> Doc:
    if stale_before is None:  # a successor in the dead worker's slot: the lease it saw only
        return {"lease_id": lease_id}
    return {"lease_id": lease_id, "heartbeat_at": {"$lt": stale_before}}


# One more run lost to a dead or stalled worker (a release or loss the run did not make itself).
ONE_MORE_LOST = {"$add": [{"$ifNull": ["$lost_runs", 0]}, 1]}


def release(
    job_id: str,
    now: datetime,
    *,
    lease_id: str | None,
    stale_before: datetime | None = None,
    lost: bool = False,
    unclaimed: bool = False,
) -> Write:
    """``processing -> pending``: handed back to be resumed, progress kept.

    By its own run (``lease_id``); by the sweeper (``stale_before``: only while the lease it saw
    is unchanged and its heartbeat still older than that); or, ``lost``, by the worker started
    in the slot of the dead one that held the lease (only while that lease is unchanged). The
    lease is closed either way; the last two count a lost run.

    ``unclaimed``: the run gives the job back before starting it (its owner had their share of
    running jobs already), so the claim does not count as an attempt, and a job never started
    shows as it did before.
    """
    judged = stale_before is not None or lost
    guard = _stale(lease_id, stale_before) if judged else _lease(lease_id or "")
    fields: Doc = {
        "lease_id": None,
        "rung_at": now,
        "stages": finish_stages({StageStatus.processing: StageStatus.pending}),
    }
    if judged:
        fields["lost_runs"] = ONE_MORE_LOST
    if unclaimed:
        attempts = {"$max": [0, {"$subtract": [{"$ifNull": ["$attempts", 1]}, 1]}]}
        never_started = {"$eq": [attempts, 0]}
        fields["attempts"] = attempts
        fields["started_at"] = {"$cond": [never_started, None, "$started_at"]}
        fields["message"] = {"$cond": [never_started, literal(ENQUEUED_MESSAGE), "$message"]}
    return _write(Transition.release, job_id, now, fields, guard=guard)


def lose(
    job_id: str, lease_id: str | None, stale_before: datetime | None, reason: str, now: datetime
) -> Write:
    """``processing -> failed``: the sweeper (``stale_before``), or a successor in the dead
    worker's slot (None), gives up on a job whose workers keep dying."""
    fields = {**_failed(reason, "WORKER_LOST", now), "lease_id": None, "lost_runs": ONE_MORE_LOST}
    return _write(Transition.lose, job_id, now, fields, guard=_stale(lease_id, stale_before))


def cancel(job_id: str, user_id: str, now: datetime) -> Write:
    """``pending|processing -> cancelled`` by its owner. The lease stays on the job, so the run
    holding it learns at its next write that *it* was cancelled, and discards its output."""
    fields = {
        "discard_pending": True,
        "message": literal(CANCELLED_MESSAGE),
        "cancelled_at": now,
        "error_code": "CANCELLED",
        "stages": finish_stages(
            {
                StageStatus.processing: StageStatus.cancelled,
                StageStatus.pending: StageStatus.cancelled,
            },
            now,
        ),
    }
    return _write(Transition.cancel, job_id, now, fields, guard={"user_id": user_id})


def ring(job_id: str, rung_before: datetime, now: datetime) -> Write:
    """A pending job's doorbell rung again; matches once per ``rung_at`` the sweeper saw."""
    return _write(Transition.ring, job_id, now, {"rung_at": now}, guard={"rung_at": rung_before})


def discarded(job_id: str, now: datetime) -> Write:
    """``failed|cancelled``, unchanged: what the job wrote is gone (``discard_pending`` off)."""
    return _write(Transition.discarded, job_id, now, {"discard_pending": False})


def index_stage(status: StageStatus, percent: int, now: datetime) -> Doc:
    """The fields of the ``index_vectors`` stage at ``status`` and ``percent``: its start time
    when it starts (percent 0), its finish time when it ends, the percent alone in between."""
    if status is StageStatus.processing and percent > 0:
        prefix = f"stages.{Stage.index_vectors.value}."
        return {prefix + "status": status.value, prefix + "percent": percent}
    return stage_fields(Stage.index_vectors, status, now, percent)


def indexed(job_id: str, status: StageStatus, percent: int, now: datetime) -> Write:
    """``completed``, unchanged: its ``index_vectors`` stage is now ``status`` at ``percent``."""
    return _write(
        Transition.indexed,
        job_id,
        now,
        {name: literal(value) for name, value in index_stage(status, percent, now).items()},
    )


def chapter_deleted(job_id: str, user_id: str, now: datetime) -> Write:
    """``completed``, unchanged: its owner deleted the chapter it made (``chapter_deleted_at``).
    A new version, so a poll, the event stream and the list all stop offering the chapter."""
    return _write(
        Transition.chapter_deleted,
        job_id,
        now,
        {"chapter_deleted_at": now},
        guard={"user_id": user_id},
    )
