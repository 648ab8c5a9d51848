"""A pool of long-lived render processes, shared by every job a worker runs at once.

    async with RenderPool(processes=2, memory_limit_bytes=1 << 30, page_time_limit_s=120) as pool:
        info = await pool.open(path)                          # DocumentInfo or ExtractionError
        pixels = await pool.measure(path, options)            # what its page images will hold
        async with contextlib.aclosing(pool.render(path, range(info.page_count), options)) as pages:
            async for page in pages:                          # RenderedPage, in any order
                ...                                           # store it; then more are made

Why processes: PyMuPDF is not thread-safe, and MuPDF can crash, hang or allocate without bound on
hostile input. Each process is forked from a forkserver with PyMuPDF and Pillow preloaded, runs
under an address-space cap (RLIMIT_AS), renders one page at a time and keeps a few documents open
so a job's pages do not reopen its file. A process that crashes, is killed (the OOM killer), runs
out of memory or overruns the per-page time limit is replaced, and only the job whose page it
was rendering fails; other jobs' pages go on.

Scheduling: every ``open``/``render`` call is a job with a queue of requests. Idle processes take
the next request round robin between jobs (a 3-page job is not stuck behind a 3,000-page one),
so one job's pages spread over every process. A job has at most ``read_ahead`` pages rendered but
not yet taken by its consumer (back-pressure: pages are produced about as fast as they are
stored). A consumer that stops iterating drops its queued pages; its in-flight ones are discarded.

The render process itself, and the protocol on its socket, are ``worker/rendering/process.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import signal
import socket
from collections import deque
from collections.abc import AsyncGenerator, Iterable, Sequence
from multiprocessing.process import BaseProcess

import msgspec

from service.domain.errors import ExtractionError, PoolClosed
from worker.rendering.page import OUT_OF_MEMORY, DocumentInfo, RenderedPage, RenderOptions
from worker.rendering.process import (
    ANSWERS,
    HEADER,
    MAX_FRAME,
    Failed,
    Measure,
    Measured,
    Open,
    Opened,
    PageHook,
    Render,
    Rendered,
    Reply,
    Request,
    serve,
)

log = logging.getLogger("worker.rendering.pool")

_context = multiprocessing.get_context("forkserver")
# The render processes' module: the forkserver imports PyMuPDF and Pillow once, for all of them.
_context.set_forkserver_preload(["worker.rendering.process"])


class _Lost(Exception):
    """The process rendering a request is gone: the request's job gets ``error``."""

    def __init__(self, error: ExtractionError) -> None:
        super().__init__(error.reason)
        self.error = error


class _Job:
    """One ``open`` or ``render`` call: requests not yet sent, replies not yet taken."""

    def __init__(self, requests: Iterable[Request], window: int) -> None:
        self.pending: deque[Request] = deque(requests)
        self.replies: asyncio.Queue[Reply | BaseException] = asyncio.Queue()
        self.window = window
        self.in_flight = 0
        self.closed = False

    def has_room(self) -> bool:
        return self.in_flight + self.replies.qsize() < self.window

    def deliver(self, reply: Reply) -> None:
        if isinstance(reply, Failed):
            self.fail(ExtractionError(reply.code, reply.reason))
        elif not self.closed:
            self.replies.put_nowait(reply)

    def fail(self, error: BaseException) -> None:
        if not self.closed:
            self.close()
            self.replies.put_nowait(error)

    def close(self) -> None:
        self.closed = True
        self.pending.clear()

    async def next(self) -> Reply:
        reply = await self.replies.get()
        if isinstance(reply, BaseException):
            raise reply
        return reply


class _Process:
    """One render process and the worker's end of its socket."""

    def __init__(
        self,
        process: BaseProcess,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        self.process = process
        self.reader = reader
        self.writer = writer
        self.paths: set[str] = set()  # documents it may hold open
        self.forget: set[str] = set()  # ... of which these belong to jobs that ended
        self.stopped = False

    @property
    def pid(self) -> int | None:
        return self.process.pid

    async def call(self, request: Request, time_limit_s: float) -> Reply:
        """Send one request and wait for its reply; ``_Lost`` if the process does not answer."""
        body = _ENCODER.encode(request)
        try:
            async with asyncio.timeout(time_limit_s):
                self.writer.write(len(body).to_bytes(HEADER, "big") + body)
                await self.writer.drain()
                size = int.from_bytes(await self.reader.readexactly(HEADER), "big")
                if size > MAX_FRAME:
                    raise _Lost(_crashed("sent an oversized reply"))
                body = await self.reader.readexactly(size)
        except TimeoutError:
            self.kill()
            raise _Lost(_timed_out(request, time_limit_s)) from None
        except (asyncio.IncompleteReadError, ConnectionError):
            raise _Lost(await self._death()) from None
        try:
            reply: Reply = _DECODER.decode(body)
        except msgspec.MsgspecError:
            raise _Lost(_crashed("sent a malformed reply")) from None
        if not isinstance(reply, Failed | ANSWERS[type(request)]):
            raise _Lost(_crashed("answered another request"))
        return reply

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError, ValueError):
            self.process.kill()

    async def stop(self) -> None:
        if self.stopped:
            return
        self.stopped = True
        self.kill()
        self.writer.close()
        await asyncio.to_thread(self.process.join, 5)
        with contextlib.suppress(ValueError):  # still running after 5 s: leave it to the OS
            self.process.close()

    async def _death(self) -> ExtractionError:
        await asyncio.to_thread(self.process.join, 5)
        code = self.process.exitcode
        if code is not None and code < 0 and -code == signal.SIGKILL:
            # The kernel's OOM killer (or an operator) killed it; under our cap that is memory.
            return OUT_OF_MEMORY
        if code is not None and code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:  # a real-time signal has no name
                name = f"signal {-code}"
            return ExtractionError("PDF_CRASHED", f"PDF processing crashed ({name})")
        return ExtractionError("PDF_CRASHED", f"PDF processing stopped unexpectedly (exit {code})")


_ENCODER = msgspec.msgpack.Encoder()
_DECODER = msgspec.msgpack.Decoder(Reply)


def _discard(starting: asyncio.Future[tuple[BaseProcess, socket.socket]]) -> None:
    if not starting.cancelled() and starting.exception() is None:
        _discard_process(*starting.result())


def _discard_process(process: BaseProcess, sock: socket.socket) -> None:
    sock.close()  # it exits on end of file; the kill is for one busy starting up
    with contextlib.suppress(ProcessLookupError, ValueError):
        process.kill()


def _crashed(what: str) -> ExtractionError:
    return ExtractionError("PDF_CRASHED", f"PDF processing crashed (the render process {what})")


def _timed_out(request: Request, limit_s: float) -> ExtractionError:
    if isinstance(request, Open):
        return ExtractionError("TIMEOUT", f"Opening the PDF timed out after {limit_s:g} s")
    if isinstance(request, Measure):
        return ExtractionError("TIMEOUT", f"Reading the PDF's pages timed out after {limit_s:g} s")
    return ExtractionError("TIMEOUT", f"PDF page {request.index + 1} timed out after {limit_s:g} s")


class RenderPool:
    """``processes`` render processes shared by every job; see the module docstring."""

    def __init__(
        self,
        processes: int,
        memory_limit_bytes: int,
        page_time_limit_s: float,
        *,
        read_ahead: int | None = None,
        documents_per_process: int = 4,
        page_hook: PageHook | None = None,
    ) -> None:
        if processes < 1:
            raise ValueError("a render pool needs at least one process")
        self._size = processes
        self._memory_limit_bytes = memory_limit_bytes
        self._page_time_limit_s = page_time_limit_s
        # Enough for every process to work on one job's pages while its consumer stores one.
        self._read_ahead = read_ahead or 2 * processes
        self._documents = documents_per_process
        self._page_hook = page_hook
        self._ring: deque[_Job] = deque()  # jobs with requests to send, in turn
        self._jobs: set[_Job] = set()
        self._work = asyncio.Event()
        self._processes: list[_Process] = []
        self._runners: list[asyncio.Task[None]] = []
        self._spawning = asyncio.Lock()
        self._started = self._closed = False

    async def __aenter__(self) -> RenderPool:
        await self.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()

    async def start(self) -> None:
        """Start the processes (the first pool also starts the forkserver: PyMuPDF's import)."""
        if self._started:
            return
        self._started = True
        for slot in range(self._size):
            self._processes.append(await self._spawn())
            self._runners.append(asyncio.create_task(self._run(slot), name=f"render-{slot}"))

    @property
    def pids(self) -> list[int | None]:
        """The render processes' ids (they change when a process is replaced)."""
        return [process.pid for process in self._processes]

    async def open(self, path: str) -> DocumentInfo:
        """Open the PDF at ``path`` in a render process: its page count, title, repairs."""
        job = self._submit([Open(path)], window=1)
        try:
            reply = await job.next()
        finally:
            self._end(job)
        assert isinstance(reply, Opened)
        return reply.info

    async def measure(self, path: str, options: RenderOptions) -> int:
        """The pixels the PDF's page images will have at ``options`` (each page capped at
        ``options.max_pixels``), read from its page boxes in a render process."""
        job = self._submit([Measure(path, options)], window=1)
        try:
            reply = await job.next()
        finally:
            self._end(job)
        assert isinstance(reply, Measured)
        return reply.pixels

    async def render(
        self, path: str, indices: Iterable[int], options: RenderOptions
    ) -> AsyncGenerator[RenderedPage, None]:
        """Render the pages at ``indices``, yielding each as it is done (in any order).

        Raises ``ExtractionError`` when a page fails its job (crash, memory, time). Close the
        iterator (``contextlib.aclosing``) to stop early: queued pages are dropped then.
        """
        requests = [Render(path, index, options) for index in indices]
        job = self._submit(requests, window=self._read_ahead)
        try:
            for _ in requests:
                reply = await job.next()
                self._work.set()  # room in the job's window
                assert isinstance(reply, Rendered)
                yield reply.page
        finally:
            self._end(job)
            self._forget(path)

    async def aclose(self) -> None:
        """Stop every process now; jobs still waiting get ``PoolClosed``."""
        if self._closed:
            return
        self._closed = True
        for runner in self._runners:
            runner.cancel()
        await asyncio.gather(*self._runners, return_exceptions=True)
        for job in list(self._jobs):
            job.fail(PoolClosed("the render pool was closed"))
        await asyncio.gather(*(process.stop() for process in self._processes))

    # Scheduling.

    def _submit(self, requests: Sequence[Request], window: int) -> _Job:
        if self._closed or not self._started:
            raise PoolClosed("the render pool is not running")
        job = _Job(requests, window)
        self._jobs.add(job)
        if job.pending:
            self._ring.append(job)
            self._work.set()
        return job

    def _end(self, job: _Job) -> None:
        job.close()
        self._jobs.discard(job)

    def _forget(self, path: str) -> None:
        for process in self._processes:
            if path in process.paths:
                process.paths.discard(path)
                process.forget.add(path)

    def _take(self) -> tuple[_Job, Request] | None:
        """The next request, round robin between jobs; None when no job may send one."""
        for _ in range(len(self._ring)):
            job = self._ring.popleft()
            if job.closed or not job.pending:
                continue  # everything sent: it leaves the ring
            self._ring.append(job)
            if job.has_room():
                job.in_flight += 1
                return job, job.pending.popleft()
        return None

    async def _next(self) -> tuple[_Job, Request]:
        while (taken := self._take()) is None:
            self._work.clear()
            await self._work.wait()
        return taken

    async def _run(self, slot: int) -> None:
        """One process's loop: take a request, send it, hand the reply to its job."""
        while True:
            job, request = await self._next()
            if not self._processes[slot].process.is_alive():
                # Killed while idle (by hand, or the OOM killer): not this request's fault.
                await self._replace(slot)
            process = self._processes[slot]
            try:
                if process.forget:
                    request = msgspec.structs.replace(request, forget=tuple(process.forget))
                    process.forget.clear()
                process.paths.add(request.path)
                reply = await process.call(request, self._page_time_limit_s)
            except _Lost as lost:
                job.fail(lost.error)
                await self._replace(slot)
            except Exception:  # a bug of ours: fail the one job, keep the pool whole
                log.exception("render process %s: unexpected error", process.pid)
                job.fail(_crashed("could not be reached"))
                await self._replace(slot)
            else:
                job.deliver(reply)
                if isinstance(reply, Failed) and reply.code == OUT_OF_MEMORY.code:
                    await self._replace(slot)  # it exits after running out of memory
            finally:
                job.in_flight -= 1

    async def _replace(self, slot: int) -> None:
        old = self._processes[slot]
        await old.stop()
        while True:
            try:
                self._processes[slot] = await self._spawn()
                return
            except OSError:  # fork failed (EAGAIN, ENOMEM): the pool waits rather than shrinks
                log.exception("render process %d could not be started; retrying", slot)
                await asyncio.sleep(1)

    async def _spawn(self) -> _Process:
        async with self._spawning:
            starting = asyncio.ensure_future(asyncio.to_thread(self._start_process))
            try:
                process, sock = await asyncio.shield(starting)
            except asyncio.CancelledError:  # the pool is closing: stop what the thread starts
                starting.add_done_callback(_discard)
                raise
        try:
            reader, writer = await asyncio.open_unix_connection(sock=sock, limit=MAX_FRAME)
        except BaseException:
            _discard_process(process, sock)
            raise
        return _Process(process, reader, writer)

    def _start_process(self) -> tuple[BaseProcess, socket.socket]:
        ours, theirs = socket.socketpair()
        process = _context.Process(
            target=serve,
            args=(theirs, self._memory_limit_bytes, self._documents, self._page_hook),
            name="pdf-render",
            daemon=True,
        )
        try:
            process.start()
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        return process, ours
