"""A lease's heartbeat: proves to the sweeper that the worker holding a job (or a chapter's
index) is alive.

A transient failure (MongoDB restarting, a network blip) does not end it: it retries with
backoff, logging what it does, and says so loudly once the lease would be stale (the sweeper
may then hand the job to another worker, whose lease this run's writes cannot pass). It ends
only when the lease is gone or the run ends.

A beat that finds the lease gone (the job cancelled or deleted by its owner, or handed to another
run while this worker was paused) calls ``on_lost``: the run is cancelled there and then, instead
of rendering on until its next guarded write, which a slow page can put minutes away. Its render
requests and uploads end as on any cancel (``worker/run/pages.py``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from service.backoff import Backoff, pause
from service.store.failure import is_transient
from worker import metrics
from worker.run.lease import LeaseLost

log = logging.getLogger("worker.run.heartbeat")

FIRST_RETRY_S = 0.25


async def keep_alive(
    beat: Callable[[], Awaitable[None]],
    subject: str,
    interval_s: float,
    stale_after_s: float,
    on_lost: Callable[[], None] | None = None,
) -> None:
    """``beat()`` every ``interval_s`` until cancelled or it raises ``LeaseLost`` (then
    ``on_lost()``); ``subject`` ("job X", "chapter X") names what is kept alive in the log."""
    retries = Backoff(first_s=min(FIRST_RETRY_S, interval_s), max_s=interval_s)
    last_beat = time.monotonic()
    delay = interval_s
    backoff: float | None = None  # set while beats fail: FIRST_RETRY_S, doubling to interval_s
    warned_stale = False
    while True:
        if backoff is None:
            await asyncio.sleep(delay)
        else:
            await pause(delay)
        try:
            await beat()
        except LeaseLost:
            log.info("%s: heartbeat stops: the lease is no longer this worker's", subject)
            if on_lost is not None:
                on_lost()
            return
        except Exception as exc:
            if not is_transient(exc):
                log.exception("%s: heartbeat failed unexpectedly; retrying", subject)
            silent_s = time.monotonic() - last_beat
            delay = backoff = retries.after(backoff)
            if silent_s + delay >= stale_after_s and not warned_stale:
                warned_stale = True
                log.error(
                    "%s: no heartbeat for %.1f s (%s): the lease is about to go stale",
                    subject, silent_s, type(exc).__name__,
                )  # fmt: skip
            else:
                log.warning(
                    "%s: heartbeat failed (%s); retrying in %.2f s",
                    subject, type(exc).__name__, delay,
                )  # fmt: skip
            continue
        last_beat = time.monotonic()
        delay, backoff = interval_s, None
        warned_stale = False
        metrics.HEARTBEAT.set_to_current_time()
