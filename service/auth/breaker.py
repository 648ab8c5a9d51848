"""A guard for blocking calls to a remote dependency that may hang or fail (Google's endpoints).

firebase-admin talks to Google synchronously, so each call takes a worker thread for as long as
Google takes to answer, up to ``FIREBASE_HTTP_TIMEOUT_S``. Left alone, a certificate endpoint
that accepts connections and never answers would hold one thread per request: 40 requests fill
anyio's default thread pool and the 41st waits for a thread *before* its own timeout starts.

A ``Breaker`` bounds that:

- at most ``concurrency`` calls run at once; the others wait for a turn on the event loop, not
  in the thread pool, so a hung dependency holds ``concurrency`` threads, no more;
- every call (its wait included) ends by ``deadline_s``: past it the caller gets a 503 and a
  call still running is abandoned to its thread (its own HTTP timeout ends it);
- a failure is remembered for ``failure_memory_s``: meanwhile callers get a 503 with
  ``Retry-After`` at once, and nothing is sent to the dependency. The first call after that is
  the next attempt: one attempt per interval, however many requests arrive.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from typing import TypeVar

import anyio
import anyio.to_thread

from service.domain.errors import DependencyFailed, DependencyUnavailable

__all__ = ["Breaker", "DependencyFailed"]

log = logging.getLogger("service.breaker")

T = TypeVar("T")


class Breaker:
    """Runs blocking calls to one dependency in threads, bounded in number, time and retries."""

    def __init__(
        self,
        name: str,
        *,
        shown_as: str,
        concurrency: int,
        deadline_s: float,
        failure_memory_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name  # in our logs
        self._shown_as = shown_as  # in the 503 a client sees
        self._limiter = anyio.CapacityLimiter(concurrency)
        self._deadline_s = deadline_s
        self._failure_memory_s = failure_memory_s
        self._clock = clock
        self._open_until = float("-inf")

    @property
    def is_open(self) -> bool:
        """Whether a recent failure is being remembered (calls are refused without an attempt)."""
        return self._clock() < self._open_until

    async def call(self, function: Callable[[], T]) -> T:
        """``function()`` in a worker thread; ``DependencyUnavailable`` (503) when it cannot be.

        Exceptions other than ``DependencyFailed`` (verdicts, such as a rejected token) pass
        through unchanged and do not count as failures.
        """
        self._refuse_if_open()
        started = False
        with anyio.move_on_after(self._deadline_s):
            async with self._limiter:
                # The call ahead of ours may have failed while we waited for our turn.
                self._refuse_if_open()
                started = True
                try:
                    return await anyio.to_thread.run_sync(function, abandon_on_cancel=True)
                except DependencyFailed as exc:
                    raise self._fail(str(exc)) from None
        if started:
            raise self._fail(f"no answer within {self._deadline_s:g} s")
        # Waited for a turn past the deadline: the calls ahead are slow, not failed (yet).
        raise self._unavailable(1.0)

    def _fail(self, cause: str) -> DependencyUnavailable:
        self._open_until = self._clock() + self._failure_memory_s
        log.error(
            "%s unreachable: answering 503 for %g s before trying again",
            self.name,
            self._failure_memory_s,
            extra={"dependency": self.name, "cause": cause},
        )
        return self._unavailable(self._failure_memory_s)

    def _refuse_if_open(self) -> None:
        remaining = self._open_until - self._clock()
        if remaining > 0:
            raise self._unavailable(remaining)

    def _unavailable(self, retry_after_s: float) -> DependencyUnavailable:
        return DependencyUnavailable(self._shown_as, retry_after_s=max(1, math.ceil(retry_after_s)))
