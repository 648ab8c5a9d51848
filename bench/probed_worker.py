"""``python -m worker`` with a probe of its event loop: ``python -m bench.probed_worker``.

The worker is the real one (``worker/__main__.py``, run by ``runpy``); the only addition is a
task started with it that sleeps ``INTERVAL_S`` over and over and records how late each wake-up
was: the time the loop could not serve a ready callback (Python code running on it, or waiting
for the GIL that another thread holds). Every second the late-by figures (ms) of that second go
to the file named by ``PCJ_LOOP_PROBE``, one line each: ``<unix time> <lag ms> <lag ms> ...``.

A timer every 10 ms costs the worker well under 1% of a core; it runs the same in every
configuration a benchmark compares.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import runpy
import time
from typing import Any

INTERVAL_S = 0.01


async def probe(path: str) -> None:
    """Record the loop's lateness until cancelled, flushing to ``path`` every second."""
    lags: list[float] = []
    flushed = time.monotonic()
    with open(path, "a", buffering=1) as out:  # noqa: ASYNC230 - a line a second
        try:
            while True:
                before = time.monotonic()
                await asyncio.sleep(INTERVAL_S)
                now = time.monotonic()
                lags.append(max(0.0, (now - before - INTERVAL_S) * 1000))
                if now - flushed >= 1.0:
                    out.write(f"{time.time():.3f} " + " ".join(f"{lag:.2f}" for lag in lags) + "\n")
                    lags.clear()
                    flushed = now
        finally:
            if lags:
                out.write(f"{time.time():.3f} " + " ".join(f"{lag:.2f}" for lag in lags) + "\n")


def main() -> None:
    import worker.wiring as wiring

    path = os.environ["PCJ_LOOP_PROBE"]
    startup, shutdown = wiring.startup, wiring.shutdown

    async def probed_startup(ctx: dict[str, Any]) -> None:
        await startup(ctx)
        ctx["loop_probe"] = asyncio.create_task(probe(path), name="loop-probe")

    async def probed_shutdown(ctx: dict[str, Any]) -> None:
        task = ctx.pop("loop_probe", None)
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await shutdown(ctx)

    # create_worker reads these module globals when it is called, after this.
    wiring.startup, wiring.shutdown = probed_startup, probed_shutdown  # type: ignore[assignment]
    runpy.run_module("worker", run_name="__main__", alter_sys=True)


if __name__ == "__main__":  # spawn and forkserver children import this module: nothing to do
    main()
