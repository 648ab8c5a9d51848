"""arq's ``Worker``, made to outlive Redis: an outage is waited out, never a reason to exit.

arq 0.28 (maintenance only) lets any Redis error escape its poll loop, which ends ``main()`` and
the process with it; its running jobs are cancelled on the way out. Here each override wraps
arq's own method and changes only what happens on a transient error (``is_transient``):

- ``main``: waits for Redis before arq's start-up (which reads ``INFO``), however long.
- ``_poll_iteration`` (read the queue, start jobs, reap finished ones, record health): on a
  transient error, logs the outage once (``worker/dependency.py``), waits with backoff and
  polls again. Running jobs go on meanwhile: they need MongoDB, not Redis. With every job slot
  busy arq's iteration asks Redis nothing, so it is pinged once a second: the outage shows in
  the logs and metrics all the same.
- ``start_jobs``: arq takes a job slot before its Redis round trips and gives it back only on a
  Redis *answer*; a lost connection there would leak the slot for good, so it is given back.
- ``close``: stopping while Redis is down, or with a job cancelled before it started (arq's own
  ``close`` ends at it), still waits for the jobs, runs ``on_shutdown`` (stops the render
  processes, closes MongoDB) and closes the pool.
- ``handle_sig``: SIGTERM/SIGINT stop the worker even when arq's one ``cancel()`` of its poll
  loop is lost (``worker/cancel.py``: Python 3.11's ``wait_for``, around every command redis-py
  sends). arq never cancels again: the loop went on starting jobs and the worker never exited
  (``docker stop`` killed it, its job handed back only after ``STALE_AFTER_S``). The stop is
  remembered: no job is picked after it, the next poll ends the loop, and a job the loop
  started meanwhile (arq cancels only the jobs running at the signal) is given back to the queue
  before it claims anything (``worker/run/task.py``), for another worker to run at once.

A doorbell read just before an outage may be lost with it: the sweeper rings its job again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from signal import Signals

from arq import Worker

from service.backoff import Backoff, pause
from service.store.failure import is_transient
from worker.dependency import REDIS

log = logging.getLogger("worker.consumer")

# Redis is asked again at most 2 s after it is back.
BACKOFF = Backoff(first_s=0.1, max_s=2.0)
PING_EVERY_S = 1.0
STARTED = "consumer_started"  # in ctx once on_startup has run: main() must not run it twice
SHUT_DOWN = "consumer_shut_down"
STOPPING = "consumer_stopping"  # in ctx once a stop signal came: no job starts after it


class Consumer(Worker):
    """An arq worker whose poll loop waits out Redis outages of any length."""

    _delay_s: float | None = None  # the last wait for Redis; None: Redis answered
    _pinged_at = -math.inf
    _stopping = False  # a stop signal came

    async def main(self) -> None:
        while True:
            await self._wait_for_redis()
            try:
                await super().main()
                return
            except Exception as exc:
                # Before on_startup (arq's INFO read raced an outage): start over. After it,
                # the poll loop below never lets a transient error out, so this is something else.
                if self.ctx.get(STARTED) or not is_transient(exc):
                    raise
                REDIS.down(exc)

    def handle_sig(self, signum: Signals) -> None:
        self._stopping = True
        self.allow_pick_jobs = False
        self.ctx[STOPPING] = True  # seen by a job the poll loop starts before it stops
        super().handle_sig(signum)

    def _stop_if_asked(self) -> None:
        """End the poll loop (or the wait for Redis) after a stop signal whose cancellation of
        this task was lost on the way: arq sends only one."""
        if self._stopping:
            raise asyncio.CancelledError

    async def _wait_for_redis(self) -> None:
        while self._pool is not None:  # arq connects by itself when it was given no pool
            self._stop_if_asked()
            try:
                await self._pool.ping()
            except Exception as exc:
                if not is_transient(exc):
                    raise
                REDIS.down(exc)
                await self._back_off()
                continue
            REDIS.up()
            self._delay_s = None
            return

    async def _poll_iteration(self) -> None:
        self._stop_if_asked()
        try:
            await super()._poll_iteration()
            if time.monotonic() - self._pinged_at >= PING_EVERY_S:
                await self.pool.ping()
                self._pinged_at = time.monotonic()
        except Exception as exc:
            if not is_transient(exc):
                raise
            REDIS.down(exc)
            await self._back_off()
            return
        REDIS.up()
        self._delay_s = None

    async def start_jobs(self, job_ids: list[bytes]) -> None:
        for job_id in job_ids:
            if self.job_counter >= self.max_jobs:
                return
            try:
                await super().start_jobs([job_id])
            except Exception:
                # arq 0.28 counts the slot taken before its Redis calls, which raised: no task
                # was started for it, so nothing else will give it back.
                self.job_counter -= 1
                self.sem.release()
                raise

    async def close(self) -> None:
        try:
            await super().close()
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise  # this close itself is being cancelled
            # arq gathers its job tasks without return_exceptions: a job cancelled before it
            # ever ran (taken just as the stop signal came) ends its close there.
            log.warning("a job cancelled before it started cut arq's close short; finishing it")
            await self._finish_close()
        except Exception as exc:
            if not is_transient(exc):
                raise
            log.warning("stopping while Redis is unreachable (%s)", type(exc).__name__)
            await self._finish_close()

    async def _finish_close(self) -> None:
        """What arq's ``close`` did not get to: wait for the jobs (each hands its job back),
        run ``on_shutdown`` (the render processes, MongoDB) and close the Redis pool."""
        await asyncio.gather(*self.tasks.values(), return_exceptions=True)
        if self.on_shutdown and not self.ctx.get(SHUT_DOWN):
            await self.on_shutdown(self.ctx)
        if self._pool is not None:
            with contextlib.suppress(Exception):
                await self._pool.close(close_connection_pool=True)
            self._pool = None

    async def _back_off(self) -> None:
        self._delay_s = BACKOFF.after(self._delay_s)
        await pause(self._delay_s)
