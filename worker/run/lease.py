"""One run of one job: the lease it holds, and its writes, throttled.

Every write goes through ``service.store.jobs.JobStore.apply`` guarded by the run's lease. A write
that matches nothing means the run has lost the job (cancelled by its owner, or taken back by
the sweeper while this worker was paused and perhaps finished by another run): ``LeaseLost``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from service.domain import lifecycle
from service.domain.errors import LeaseLost
from service.domain.job import JobStatus, utcnow
from service.store.documents import JobDoc
from service.store.jobs import APPLIED_FIELDS, JobStore
from worker.run.patience import Patience

__all__ = ["LeaseLost", "ProgressWriter", "Run"]

Doc = dict[str, Any]

RELEASE_PATIENCE_S = 5.0


@dataclass(frozen=True, slots=True)
class Run:
    """The run holding ``job_id`` under ``lease_id``: every write it makes is guarded by it."""

    job_id: str
    lease_id: str
    jobs: JobStore = field(compare=False)

    # Waits out MongoDB outages (worker/run/patience.py); how long it waited tells a time limit
    # spent on the PDF from one spent waiting.
    patience: Patience = field(default_factory=Patience, compare=False)

    async def advance(
        self,
        progress: int,
        message: str,
        fields: Doc | None = None,
        page_errors: list[Doc] | None = None,
        *,
        pages_processed: int | None = None,
    ) -> None:
        await self._apply(
            "write progress",
            lambda: lifecycle.advance(
                self.job_id, self.lease_id, progress, message, utcnow(), fields, page_errors,
                pages_processed=pages_processed,
            ),
        )  # fmt: skip

    async def complete(self, result: Doc, message: str, fields: Doc | None = None) -> None:
        await self._apply(
            "complete the job",
            lambda: lifecycle.complete(
                self.job_id, self.lease_id, result, message, utcnow(), fields
            ),
        )

    async def fail(self, reason: str, code: str) -> None:
        await self._apply(
            "fail the job",
            lambda: lifecycle.fail(self.job_id, self.lease_id, reason, code, utcnow()),
        )

    async def release(self) -> None:
        """Hand the job back; gives up after ``RELEASE_PATIENCE_S`` (a stopping worker must not
        hang on it: the sweeper releases a job whose heartbeat went stale anyway)."""
        await self._apply(
            "hand the job back",
            lambda: lifecycle.release(self.job_id, utcnow(), lease_id=self.lease_id),
            Patience(give_up_after_s=RELEASE_PATIENCE_S),
        )

    async def beat(self) -> None:
        """One heartbeat, not retried here: the heartbeat task has its own schedule."""
        await self._apply(
            "beat", lambda: lifecycle.beat(self.job_id, self.lease_id, utcnow()), Patience(0)
        )

    async def _apply(
        self, what: str, build: Callable[[], lifecycle.Write], patience: Patience | None = None
    ) -> JobDoc:
        # Built again for each attempt: a retried write carries the time it is made, so the
        # heartbeat it sets never goes back.
        doc = await (patience or self.patience).call(lambda: self.jobs.apply(build()), what)
        if doc is None:
            doc = await self._landed(build().transition)
        if doc is None:
            raise LeaseLost(self.job_id)
        return doc

    async def _landed(self, transition: lifecycle.Transition) -> JobDoc | None:
        """The job, if an earlier attempt of this write reached MongoDB before its answer was
        lost (a retried ``complete`` then finds the job completed under this run's lease)."""
        doc = await self.jobs.get(self.job_id, APPLIED_FIELDS)
        target = lifecycle.leads_to(transition, JobStatus.processing).value
        if doc is not None and doc.get("lease_id") == self.lease_id and doc["status"] == target:
            return doc
        return None


@dataclass
class ProgressWriter:
    """Throttles a run's progress writes: at most one per ``interval_s``, the last always.

    Page errors are never held back. ``report`` raises ``LeaseLost`` once the job is no longer
    the run's, which stops the page loop.
    """

    run: Run
    interval_s: float = 0.25
    clock: Callable[[], float] = time.monotonic
    writes: int = 0
    _last_write: float = field(default=float("-inf"), init=False)
    _pending: tuple[int, str, Doc | None, int | None] | None = field(default=None, init=False)

    async def report(
        self,
        progress: int,
        message: str,
        fields: Doc | None = None,
        *,
        page_errors: list[Doc] | None = None,
        pages_processed: int | None = None,
        force: bool = False,
    ) -> None:
        self._pending = (progress, message, fields, pages_processed)
        if force or page_errors or self.clock() - self._last_write >= self.interval_s:
            await self.flush(page_errors)

    async def flush(self, page_errors: list[Doc] | None = None) -> None:
        """Write the last reported progress, if it was not written yet."""
        if self._pending is None and not page_errors:
            return
        progress, message, fields, pages_processed = self._pending or (0, "", None, None)
        self._pending = None
        self._last_write = self.clock()
        self.writes += 1
        await self.run.advance(
            progress, message, fields, page_errors, pages_processed=pages_processed
        )
