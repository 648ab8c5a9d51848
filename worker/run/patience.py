"""Waiting out an outage: a call to MongoDB retried with backoff while its failure is transient.

A run's writes are idempotent (guarded by its lease, pages upserted, the chapter inserted once),
so repeating one that may or may not have reached the server is safe. The driver already retries
a write once after a failover (retryable writes); this covers the outages that outlast that one
retry: a restart, a long election, a network cut.

Each ``Patience`` belongs to one run and adds up how long its calls waited, so the run can tell a
time limit spent waiting for MongoDB from one spent on the PDF.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from service.backoff import Backoff, pause
from service.store.failure import is_transient
from worker.dependency import MONGODB, Dependency

log = logging.getLogger("worker.run.patience")

T = TypeVar("T")

# At worst a run notices that MongoDB is back 2 s late.
BACKOFF = Backoff(first_s=0.1, max_s=2.0)


@dataclass
class Patience:
    """Retries transient failures with backoff; ``give_up_after_s`` None waits for as long as
    it takes (a run's lease cannot be taken from it while nobody can reach MongoDB)."""

    give_up_after_s: float | None = None
    dependency: Dependency = MONGODB
    waited_s: float = 0.0

    async def call(self, operation: Callable[[], Awaitable[T]], what: str) -> T:
        """``await operation()``, again after each transient failure until it succeeds, fails
        otherwise, or has waited ``give_up_after_s`` (then the last error is raised)."""
        limit = self.give_up_after_s
        started = time.monotonic()
        delays = BACKOFF.delays()
        delay = next(delays)
        attempt = 0
        while True:
            try:
                result = await operation()
            except Exception as exc:
                if not is_transient(exc):
                    raise
                self.dependency.down(exc)
                waited = time.monotonic() - started
                if limit is not None and waited + delay > limit:
                    raise
                attempt += 1
                if attempt == 1:
                    log.warning("waiting to %s: %s", what, type(exc).__name__)
                await pause(delay)
                self.waited_s += delay
                delay = next(delays)
                continue
            self.dependency.up()
            if attempt:
                log.info(
                    "%s: done after %d retries (%.1f s)", what, attempt, time.monotonic() - started
                )
            return result
