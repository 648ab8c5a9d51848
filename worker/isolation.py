"""Run the extraction in a child process, so that MuPDF failing fails one job, not the worker.

The child is forked from a forkserver that has PyMuPDF preloaded (cheap to start, and never a
fork of the worker's threads). Its address space is capped (``JOB_MEMORY_LIMIT_MB``) and its wall
time bounded (``JOB_TIME_LIMIT_S``); a child that dies, runs out of memory or overruns becomes an
``ExtractionError`` with a clear reason.
"""

from __future__ import annotations

import asyncio
import contextlib
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


READ_AHEAD = 8  # batches buffered between the child and the database writes


def warm_up() -> None:
    """Start the forkserver now (it imports PyMuPDF once), not inside the first job."""
    from multiprocessing import forkserver

    forkserver.ensure_running()


def _drain(conn: Connection, loop: asyncio.AbstractEventLoop, inbox: asyncio.Queue[Any]) -> None:
    """Reader thread: move messages from the pipe to ``inbox`` while the worker writes pages,
    so the child never waits on the database. A bounded inbox applies back-pressure."""
    while True:
        try:
            message: Any = conn.recv()
        except (EOFError, OSError):
            message = EOFError()
        asyncio.run_coroutine_threadsafe(inbox.put(message), loop).result()
        if isinstance(message, EOFError) or message[0] in ("done", "error"):
            return


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
    inbox: asyncio.Queue[Any] = asyncio.Queue(maxsize=READ_AHEAD)
    reader = asyncio.create_task(
        asyncio.to_thread(_drain, receiver, asyncio.get_running_loop(), inbox)
    )
    try:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ExtractionError(
                    "TIMEOUT", f"PDF processing timed out after {time_limit_s:g} s"
                )
            try:
                message = await asyncio.wait_for(inbox.get(), min(remaining, 1.0))
            except TimeoutError:
                continue
            if isinstance(message, EOFError):
                raise _death_of(child)
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
        await _reap(child)  # the pipe then ends, and so does the reader thread
        while not reader.done():
            # Unblock a reader waiting for room in the inbox; return as soon as it has ended.
            with contextlib.suppress(asyncio.QueueEmpty):
                inbox.get_nowait()
            await asyncio.wait({reader}, timeout=0.01)
        receiver.close()


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
