"""Stopping a task for sure: on Python 3.11 one ``Task.cancel()`` can be lost.

``asyncio.wait_for`` in 3.11 returns the awaited operation's result when the cancellation of its
caller arrives in the same turn of the event loop as that operation completes (CPython
gh-86296; 3.12 rebuilt ``wait_for`` on ``asyncio.timeout`` and no longer loses it). redis-py sends
every command through ``wait_for`` (``socket_timeout`` is set: ``create_queue``), pymongo reads
and writes through it, so a task cancelled while it talks to Redis or MongoDB may simply go on:
a loop around such calls (the heartbeat, the sweeper, arq's poll loop) then never ends, and
whoever awaits it after cancelling it waits forever.
"""

from __future__ import annotations

import asyncio
from typing import Any

RECANCEL_EVERY_S = 1.0


async def cancel_and_wait(task: asyncio.Task[Any]) -> None:
    """Cancel ``task`` and wait until it has ended, cancelling it again each second it runs on.

    Returns once it is cancelled or has returned; raises what it raised otherwise. For tasks
    that may be cancelled at any await (loops with nothing to finish): not for a job, whose
    cancellation handler hands the job back and must not itself be interrupted.
    """
    while not task.done():
        task.cancel()
        await asyncio.wait([task], timeout=RECANCEL_EVERY_S)
    if not task.cancelled():
        task.result()
