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
was rendering fails; other jobs' pages go on. OCR stops itself within its own time limit, kept
below the page's (``within_page_limit``): a page OCR cannot read in time comes back with its
image and a warning, and its job goes on.

Scheduling: every ``open``/``render`` call is a job with a queue of requests, and an owner (the
user whose PDF it is). An idle process takes the next request of the owner with the fewest
pages in flight, round robin between jobs after that (a 3-page job is not stuck behind a
3,000-page one, nor one user behind another's many jobs), so a job alone spreads its pages over
every process. A job has at most ``read_ahead`` pages rendered but not yet taken by its consumer
(back-pressure: pages are produced about as fast as they are stored). A consumer that stops
iterating drops its queued pages; its in-flight ones are discarded.

Slow pages: a job may hold every process while it is alone, but a page that has been rendering
for ``slow_page_s`` while another job waits for a process, in a job holding more than its share
of the processes, is preempted: its process is replaced and the page goes back to the front of
its job's queue, to be rendered again (to its end, or ``page_time_limit_s``: a page is
preempted once). Its job is demoted: its pages go after every other job's, one at a time while
others wait. A pathological page (nested form XObjects that take hours) then holds one process
at most while others are served, instead of all of them until the time limit.

The render process itself, and the protocol on its socket, are ``worker/rendering/process.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import signal
import socket
from collections import Counter, deque
from collections.abc import AsyncGenerator, Iterable, Sequence
from multiprocessing.process import BaseProcess

import msgspec

from service.children import start_on_socket
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

# A page still rendering after this long, in a job holding more than its share of the processes
# while another job waits, is preempted (module docstring). Above every page we can foresee: the
# slowest of 944 real pages rendered in 0.33 s, an OCR'd page takes 3.6 s; so a normal page is
# hardly ever preempted, and a job waits at most this long for a process.
SLOW_PAGE_S = 5.0

_context = multiprocessing.get_context("forkserver")
# The render processes' module: the forkserver imports PyMuPDF and Pillow once, for all of them.
_context.set_forkserver_preload(["worker.rendering.process"])


# The share of the page time limit a page's OCR may take: the rest is for what OCR's deadline
# does not cover (rendering, Tesseract's layout pass: 0.3 s on a 300 DPI text page, 2.1 s on one
# of pure noise, encoding), so a page OCR cannot read in time gets a warning, not a killed
# process and a failed job.
OCR_SHARE_OF_PAGE_LIMIT = 0.5


def within_page_limit(options: RenderOptions, page_time_limit_s: float) -> RenderOptions:
    """``options`` with an OCR time limit of at most ``OCR_SHARE_OF_PAGE_LIMIT`` of the page's."""
    budget = page_time_limit_s * OCR_SHARE_OF_PAGE_LIMIT
    if options.ocr_time_limit_s <= budget:
        return options
    return msgspec.structs.replace(options, ocr_time_limit_s=budget)


class _Lost(Exception):
    """The process rendering a request is gone: the request's job gets ``error``."""

    def __init__(self, error: ExtractionError) -> None:
        super().__init__(error.reason)
        self.error = error


class _Job:
    """One ``open``, ``measure`` or ``render`` call: requests not yet sent, replies not yet
    taken; whose PDF it is; whether a slow page demoted it."""

    def __init__(self, requests: Iterable[Request], window: int, owner: str = "") -> None:
        self.pending: deque[Request] = deque(requests)
        self.replies: asyncio.Queue[Reply | BaseException] = asyncio.Queue()
        self.window = window
        self.owner = owner
        self.in_flight = 0
        self.closed = False
        self.demoted = False
        self.preempted: set[int] = set()  # pages already preempted once (their index)

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
        # What it renders now, since when (the loop's clock), and whether the pool killed it to
        # give its process to another job (the request then goes back to its job's queue).
        self.job: _Job | None = None
        self.request: Request | None = None
        self.since = 0.0
        self.preempted = False

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
        slow_page_s: float = SLOW_PAGE_S,
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
        self._slow_page_s = slow_page_s
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
        self._runners.append(asyncio.create_task(self._watch(), name="render-watch"))

    @property
    def pids(self) -> list[int | None]:
        """The render processes' ids (they change when a process is replaced)."""
        return [process.pid for process in self._processes]

    async def open(self, path: str, owner: str = "") -> DocumentInfo:
        """Open the PDF at ``path`` in a render process: its page count, title, repairs."""
        job = self._submit([Open(path)], window=1, owner=owner)
        try:
            reply = await job.next()
        finally:
            self._end(job)
        assert isinstance(reply, Opened)
        return reply.info

    async def measure(self, path: str, options: RenderOptions, owner: str = "") -> int:
        """The pixels the PDF's page images will have at ``options`` (each page capped at
        ``options.max_pixels``), read from its page boxes in a render process."""
        job = self._submit([Measure(path, options)], window=1, owner=owner)
        try:
            reply = await job.next()
        finally:
            self._end(job)
        assert isinstance(reply, Measured)
        return reply.pixels

    async def render(
        self, path: str, indices: Iterable[int], options: RenderOptions, owner: str = ""
    ) -> AsyncGenerator[RenderedPage, None]:
        """Render the pages at ``indices`` of ``owner``'s PDF, yielding each as it is done (in
        any order).

        Raises ``ExtractionError`` when a page fails its job (crash, memory, time). Close the
        iterator (``contextlib.aclosing``) to stop early: queued pages are dropped then.
        """
        options = within_page_limit(options, self._page_time_limit_s)
        requests = [Render(path, index, options) for index in indices]
        job = self._submit(requests, window=self._read_ahead, owner=owner)
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

    def _submit(self, requests: Sequence[Request], window: int, owner: str) -> _Job:
        if self._closed or not self._started:
            raise PoolClosed("the render pool is not running")
        job = _Job(requests, window, owner)
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
        """The next request: of the owner with the fewest pages in flight, a job that is not
        demoted first, round robin between jobs after that; None when no job may send one."""
        for job in [job for job in self._ring if job.closed or not job.pending]:
            self._ring.remove(job)  # everything sent: it leaves the ring
        owners: Counter[str] = Counter()
        for process in self._processes:
            if process.job is not None:
                owners[process.job.owner] += 1
        waiting = any(not job.demoted and job.has_room() for job in self._ring)
        best: _Job | None = None
        for job in self._ring:  # in turn: the first of equals wins
            if not job.has_room() or (job.demoted and waiting and job.in_flight > 0):
                continue  # a demoted job sends one page at a time while others wait
            if best is None or (job.demoted, owners[job.owner]) < (
                best.demoted,
                owners[best.owner],
            ):
                best = job
        if best is None:
            return None
        self._ring.remove(best)
        self._ring.append(best)  # its turn is taken: to the back
        best.in_flight += 1
        return best, best.pending.popleft()

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
            process.job, process.request = job, request
            process.since = asyncio.get_running_loop().time()
            try:
                if process.forget:
                    request = msgspec.structs.replace(request, forget=tuple(process.forget))
                    process.forget.clear()
                process.paths.add(request.path)
                reply = await process.call(request, self._page_time_limit_s)
            except _Lost as lost:
                if process.preempted and not job.closed:
                    self._requeue(job, request)  # killed by the pool, not by its page
                else:
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
                process.job = process.request = None
                job.in_flight -= 1
                self._work.set()  # a process is free, or a job's queue grew

    def _requeue(self, job: _Job, request: Request) -> None:
        """Put a preempted page back at the front of its job's queue."""
        job.pending.appendleft(msgspec.structs.replace(request, forget=()))
        if job not in self._ring:
            self._ring.append(job)

    async def _watch(self) -> None:
        """Every quarter of ``slow_page_s``: preempt a slow page that keeps a waiting job from a
        process (module docstring)."""
        while True:
            await asyncio.sleep(self._slow_page_s / 4)
            victim = self._victim(asyncio.get_running_loop().time())
            if victim is not None and victim.job is not None:
                job, request = victim.job, victim.request
                if isinstance(request, Render):
                    job.preempted.add(request.index)
                job.demoted = True
                victim.preempted = True
                log.info(
                    "render process %s: page %s of a job rendering for %.0f s, preempted for a "
                    "job that waits",
                    victim.pid, getattr(request, "index", -1) + 1, self._slow_page_s,
                )  # fmt: skip
                victim.kill()

    def _victim(self, now: float) -> _Process | None:
        """The process to take back for a waiting job, or None: a job waits (it has a request
        it may send) while every process is busy, and a page of a job holding more than its
        share of the processes has rendered for ``slow_page_s``, never preempted before."""
        busy = [process for process in self._processes if process.job is not None]
        if len(busy) < len(self._processes):
            return None  # a process is free: the waiting job gets it
        waiting = [
            job
            for job in self._ring
            if not job.closed and job.pending and job.has_room() and not job.demoted
        ]
        if not waiting:
            return None
        held: Counter[int] = Counter(id(process.job) for process in busy)
        share = len(self._processes) / len({id(job) for job in waiting} | set(held))
        slow = [
            process
            for process in busy
            if isinstance(process.request, Render)
            and not process.preempted
            and process.request.index not in process.job.preempted  # type: ignore[union-attr]
            and now - process.since >= self._slow_page_s
            and held[id(process.job)] > share
        ]
        # The most recently started of the slowest job's pages: the least work lost.
        return max(slow, key=lambda process: (held[id(process.job)], process.since), default=None)

    async def _replace(self, slot: int) -> None:
        old = self._processes[slot]
        old.job = old.request = None
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
        args = (self._memory_limit_bytes, self._documents, self._page_hook)
        return start_on_socket(_context, serve, args, name="pdf-render")
