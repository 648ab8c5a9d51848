"""Run the extraction in a child process, so that MuPDF failing fails one job, not the worker.

The child is forked from a forkserver that has PyMuPDF preloaded (cheap to start, and never a
fork of the worker's threads). Its address space is capped (``JOB_MEMORY_LIMIT_MB``) and its wall
time bounded (``JOB_TIME_LIMIT_S``); a child that dies, runs out of memory or overruns becomes an
``ExtractionError`` with a clear reason.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import signal
import time
from collections.abc import Awaitable, Callable
from multiprocessing.connection import Connection
from typing import Any

from worker.extract import OUT_OF_MEMORY, ExtractionError, run

_context = multiprocessing.get_context("forkserver")
_context.set_forkserver_preload(["worker.extract"])

PageBatch = list[tuple[int, str, str | None]]


def _receive(conn: Connection, timeout: float) -> Any:
    """The next message, or None if nothing came within ``timeout``; EOFError if the child died."""
    if conn.poll(timeout):
        return conn.recv()
    return None


async def extract_in_child(
    path: str,
    *,
    memory_limit_bytes: int,
    time_limit_s: float,
    on_meta: Callable[[int, str | None], Awaitable[bool]],
    on_pages: Callable[[PageBatch], Awaitable[bool]],
) -> None:
    """Extract ``path`` in a child; the callbacks return False to stop early (job cancelled).

    Raises ``ExtractionError`` for a document the child could not process, and ``Stopped`` when
    a callback asked to stop.
    """
    receiver, sender = _context.Pipe(duplex=False)
    child = _context.Process(
        target=run, args=(path, sender, memory_limit_bytes), name="pdf-extract", daemon=True
    )
    child.start()
    sender.close()
    deadline = time.monotonic() + time_limit_s
    try:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ExtractionError(
                    "TIMEOUT", f"PDF processing timed out after {time_limit_s:g} s"
                )
            try:
                message = await asyncio.to_thread(_receive, receiver, min(remaining, 1.0))
            except (EOFError, OSError):
                raise _death_of(child) from None
            if message is None:
                continue
            kind = message[0]
            if kind == "meta":
                if not await on_meta(message[1], message[2]):
                    raise Stopped
            elif kind == "pages":
                if not await on_pages(message[1]):
                    raise Stopped
            elif kind == "done":
                return
            elif kind == "error":
                raise ExtractionError(message[1], message[2])
    finally:
        receiver.close()
        await _reap(child)


class Stopped(Exception):
    """The job left ``processing`` (cancelled) while its PDF was being read."""


def _death_of(child: Any) -> ExtractionError:
    child.join(5)
    code = child.exitcode
    if code is not None and code < 0 and -code == signal.SIGKILL:
        # The kernel's OOM killer (or an operator) killed it; under our cap that is memory.
        return OUT_OF_MEMORY
    if code is not None and code < 0:
        name = signal.Signals(-code).name
        return ExtractionError("PDF_CRASHED", f"PDF processing crashed ({name})")
    return ExtractionError("PDF_CRASHED", f"PDF processing stopped unexpectedly (exit {code})")


async def _reap(child: Any) -> None:
    if child.is_alive():
        child.kill()
    await asyncio.to_thread(child.join, 5)
    child.close()
