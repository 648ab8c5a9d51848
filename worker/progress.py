"""One run of one job: the lease it holds, and its writes, throttled.

Every write goes through ``service.store.job_store.apply`` guarded by the run's lease. A write
that matches nothing means the run has lost the job (cancelled by its owner, or taken back by
the sweeper while this worker was paused and perhaps finished by another run): ``LeaseLost``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from service.domain import lifecycle
from service.domain.job import utcnow
from service.store.documents import JobDoc
from service.store.job_store import apply

Doc = dict[str, Any]


class LeaseLost(Exception):
    """A write of this run was refused: the job is no longer this run's."""


@dataclass(frozen=True, slots=True)
class Run:
    """The run holding ``job_id`` under ``lease_id``: every write it makes is guarded by it."""

    job_id: str
    lease_id: str

    async def advance(
        self,
        progress: int,
        message: str,
        fields: Doc | None = None,
        page_errors: list[Doc] | None = None,
    ) -> None:
        write = lifecycle.advance(
            self.job_id, self.lease_id, progress, message, utcnow(), fields, page_errors
        )
        await self._apply(write)

    async def complete(self, result: Doc, message: str, fields: Doc | None = None) -> None:
        write = lifecycle.complete(self.job_id, self.lease_id, result, message, utcnow(), fields)
        await self._apply(write)

    async def fail(self, reason: str, code: str) -> None:
        await self._apply(lifecycle.fail(self.job_id, self.lease_id, reason, code, utcnow()))

    async def release(self) -> None:
        await self._apply(lifecycle.release(self.job_id, utcnow(), lease_id=self.lease_id))

    async def beat(self) -> None:
        await self._apply(lifecycle.beat(self.job_id, self.lease_id, utcnow()))

    async def _apply(self, write: lifecycle.Write) -> JobDoc:
        doc = await apply(write)
        if doc is None:
            raise LeaseLost(self.job_id)
        return doc


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
    _pending: tuple[int, str, Doc | None] | None = field(default=None, init=False)

    async def report(
        self,
        progress: int,
        message: str,
        fields: Doc | None = None,
        *,
        page_errors: list[Doc] | None = None,
        force: bool = False,
    ) -> None:
        self._pending = (progress, message, fields)
        if force or page_errors or self.clock() - self._last_write >= self.interval_s:
            await self.flush(page_errors)

    async def flush(self, page_errors: list[Doc] | None = None) -> None:
        """Write the last reported progress, if it was not written yet."""
        if self._pending is None and not page_errors:
            return
        progress, message, fields = self._pending or (0, "", None)
        self._pending = None
        self._last_write = self.clock()
        self.writes += 1
        await self.run.advance(progress, message, fields, page_errors)
