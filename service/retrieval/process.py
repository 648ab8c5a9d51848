"""One embedding process holding one model, and the async client that talks to it.

    async with EmbeddingProcess(load_model_spec(None), threads=1) as embedding:
        vectors = await embedding.embed(texts, "passage")   # float32 (len(texts), 384)

Why a process: onnxruntime with the model is ~410-450 MB that the worker's and the API's own
processes should not carry, its threads are the one CPU cost to bound (``threads``), and its
memory is capped (RLIMIT_AS) so a runaway allocation kills it, not its host. One per worker
(shared by every job; render processes never load the model) and one per API process (started
lazily by the first search).

It is started with multiprocessing's ``spawn`` (a fresh interpreter: never a fork of a process
running an event loop and threads) and talks over a socketpair, protocol in
``service/retrieval/protocol.py``. Note that ``spawn`` imports the parent's ``__main__`` module
in the child unless it is a package's ``__main__`` (``python -m worker`` is skipped): a script
must keep its work under ``if __name__ == "__main__"``.

Requests wait in a queue of at most ``max_queued`` (more: ``EmbeddingBusy`` at once, a 503 for
the API) and one runner sends them in turn; a long ``embed`` call is cut into requests of
``texts_per_request`` texts, so calls interleave and a query does not wait behind a whole
chapter. A request over ``time_limit_s`` kills the process. When the process dies (crash,
SIGKILL, out of memory, time limit), the request it was answering fails with a clear error and
the next request starts a new process. A caller that gives up (cancelled) does not disturb the
exchange: its reply is dropped.

Errors (all ``EmbeddingError``):
    EmbeddingUnavailable   the process could not start: model refused, memory cap too low, start
                           timed out. ``permanent`` when retrying cannot help (a bad model).
    EmbeddingCrashed       the process died or ran out of memory answering this request
    EmbeddingTimeout       the request overran ``time_limit_s`` (the process was killed)
    EmbeddingBusy          ``max_queued`` requests already wait
    EmbeddingClosed        ``aclose()`` was called
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import signal
import socket
from collections.abc import Sequence
from multiprocessing.process import BaseProcess

import msgspec
import numpy as np

from service.children import start_on_socket
from service.domain.errors import (
    EmbeddingBusy,
    EmbeddingClosed,
    EmbeddingCrashed,
    EmbeddingError,
    EmbeddingTimeout,
    EmbeddingUnavailable,
)
from service.retrieval.model import ModelSpec, Vectors
from service.retrieval.protocol import (
    HEADER,
    MAX_FRAME,
    MODEL,
    OUT_OF_MEMORY,
    Embed,
    Embedded,
    Failed,
    Ready,
    Reply,
    serve,
)
from service.retrieval.tokens import Kind

__all__ = [
    "EmbeddingBusy",
    "EmbeddingClosed",
    "EmbeddingCrashed",
    "EmbeddingError",
    "EmbeddingProcess",
    "EmbeddingTimeout",
    "EmbeddingUnavailable",
]

log = logging.getLogger("service.retrieval.process")
_context = multiprocessing.get_context("spawn")
_ENCODER = msgspec.msgpack.Encoder()
_DECODER = msgspec.msgpack.Decoder(Reply)

# Measured here (MiniLM int8, batches of 2,048 tokens, RLIMIT_AS lowered until batches failed):
# the process maps ~420 MB once loaded and needs a cap of ~585 MB with 1 thread, ~645 MB with 2
# (each onnxruntime thread and its glibc arena reserve address space); its RSS peaks at 410-450 MB.
# Below the cap's need, onnxruntime's arena refuses a batch: that request fails, the process is
# replaced. 1 GB leaves a margin for more threads or a bigger model of this size.
DEFAULT_MEMORY_LIMIT_BYTES = 1024 * 1024 * 1024
# The embedder's MAX_BATCH_TOKENS, spelled out: importing embedder.py would load onnxruntime into
# the client's process too.
BATCH_TOKENS = 2048
# A token covers at most ~100 characters (WordPiece makes [UNK] of a longer word): a text longer
# than this is cut by the tokenizer anyway, and sending it whole would only swell a frame.
_CHARS_PER_TOKEN_MAX = 128


class _Request:
    def __init__(self, frame: bytes, rows: int) -> None:
        self.frame = frame
        self.rows = rows
        self.reply: asyncio.Future[Vectors] = asyncio.get_running_loop().create_future()


class _Child:
    """The process and the client's end of its socket."""

    def __init__(
        self, process: BaseProcess, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.process = process
        self.reader = reader
        self.writer = writer

    async def send(self, frame: bytes) -> None:
        self.writer.write(len(frame).to_bytes(HEADER, "big") + frame)
        await self.writer.drain()

    async def receive(self) -> Reply:
        size = int.from_bytes(await self.reader.readexactly(HEADER), "big")
        if size > MAX_FRAME:
            raise EmbeddingCrashed("the embedding process sent an oversized reply")
        try:
            return _DECODER.decode(await self.reader.readexactly(size))
        except msgspec.MsgspecError:
            raise EmbeddingCrashed("the embedding process sent a malformed reply") from None

    async def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError, ValueError):
            self.process.kill()
        self.writer.close()
        with contextlib.suppress(OSError):
            await self.writer.wait_closed()
        await asyncio.to_thread(self.process.join, 10)
        with contextlib.suppress(ValueError):  # still running after 10 s: left to the OS
            self.process.close()

    async def death(self) -> str:
        """Why the process is gone (waited for, briefly)."""
        await asyncio.to_thread(self.process.join, 5)
        code = self.process.exitcode
        if code is None:
            return "the embedding process stopped answering"
        if code == -signal.SIGKILL:
            return "the embedding process was killed (SIGKILL: out of memory, or an operator)"
        if code < 0:
            return f"the embedding process crashed ({_signal_name(-code)})"
        return f"the embedding process exited unexpectedly (exit {code})"


class EmbeddingProcess:
    """The client of one embedding process; see the module docstring."""

    def __init__(
        self,
        spec: ModelSpec,
        *,
        threads: int = 1,
        memory_limit_bytes: int = DEFAULT_MEMORY_LIMIT_BYTES,
        time_limit_s: float = 60.0,
        start_time_limit_s: float = 120.0,
        max_queued: int = 32,
        texts_per_request: int = 16,
        batch_tokens: int = BATCH_TOKENS,
        nice: int = 0,
    ) -> None:
        if threads < 1 or max_queued < 1 or texts_per_request < 1:
            raise ValueError("threads, max_queued and texts_per_request must be positive")
        self.spec = spec
        self._threads = threads
        self._memory_limit_bytes = memory_limit_bytes
        self._time_limit_s = time_limit_s
        self._start_time_limit_s = start_time_limit_s
        self._texts_per_request = texts_per_request
        self._batch_tokens = batch_tokens
        self._nice = nice  # added to the process's niceness: lower CPU priority than its host
        self._max_chars = spec.max_tokens * _CHARS_PER_TOKEN_MAX
        self._queue: asyncio.Queue[_Request] = asyncio.Queue(max_queued)
        self._child: _Child | None = None
        self._runner: asyncio.Task[None] | None = None
        self._spawning = asyncio.Lock()
        # A start that cannot succeed by trying again (the model refused): every later request
        # fails with it at once rather than spawn a process per request.
        self._broken: EmbeddingUnavailable | None = None
        self._closed = False

    async def __aenter__(self) -> EmbeddingProcess:
        await self.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()

    @property
    def pid(self) -> int | None:
        """The running process's id (it changes when the process is replaced), or None."""
        return self._child.process.pid if self._child else None

    async def start(self) -> None:
        """Start the process now and wait until its model is loaded (``EmbeddingUnavailable``
        if it cannot be). Optional: the first ``embed`` starts it too."""
        self._ensure_runner()
        await self._ensure_child()

    async def embed(self, texts: Sequence[str], kind: Kind) -> Vectors:
        """Vectors of ``texts`` (float32, one row each, in order); see the module's errors."""
        if kind not in ("passage", "query"):
            raise ValueError(f"kind must be 'passage' or 'query', not {kind!r}")
        self._ensure_runner()
        out = np.empty((len(texts), self.spec.dimensions), dtype=np.float32)
        # Requests of texts of about one length: the process pads each batch to its longest text,
        # and requests of 16 texts in their callers' order cost up to ~10% more CPU a passage
        # than the in-process embedder, which sorts a whole call (bench/index.py, part 1).
        order = sorted(range(len(texts)), key=lambda index: len(texts[index]))
        step = self._texts_per_request
        for start in range(0, len(texts), step):
            rows = order[start : start + step]
            part = [texts[row][: self._max_chars] for row in rows]
            request = _Request(_ENCODER.encode(Embed(part, kind)), len(part))
            try:
                self._queue.put_nowait(request)
            except asyncio.QueueFull:
                raise EmbeddingBusy(
                    f"{self._queue.maxsize} embedding requests are already waiting"
                ) from None
            out[rows] = await request.reply
        return out

    def memory(self) -> dict[str, int]:
        """The process's ``VmRSS``, ``VmHWM`` (peak RSS) and ``VmSize`` in bytes ({} if none)."""
        if self._child is None or self._child.process.pid is None:
            return {}
        fields = {}
        with contextlib.suppress(OSError), open(f"/proc/{self._child.process.pid}/status") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key in ("VmRSS", "VmHWM", "VmSize"):
                    fields[key] = int(value.split()[0]) * 1024
        return fields

    async def aclose(self) -> None:
        """Stop the process; requests still waiting fail with ``EmbeddingClosed``."""
        if self._closed:
            return
        self._closed = True
        if self._runner is not None:
            self._runner.cancel()
            await asyncio.gather(self._runner, return_exceptions=True)
        while not self._queue.empty():
            _fail(self._queue.get_nowait(), EmbeddingClosed("the embedding client was closed"))
        async with self._spawning:
            if self._child is not None:
                child, self._child = self._child, None
                await child.stop()

    # The runner: one request at a time, in order.

    def _ensure_runner(self) -> None:
        if self._closed:
            raise EmbeddingClosed("the embedding client was closed")
        if self._runner is None:
            self._runner = asyncio.create_task(self._run(), name="embedding-runner")

    async def _run(self) -> None:
        while True:
            request = await self._queue.get()
            if request.reply.done():
                continue  # its caller gave up before it was sent
            try:
                child = await self._ensure_child()
                vectors = await self._call(child, request)
            except asyncio.CancelledError:
                _fail(request, EmbeddingClosed("the embedding client was closed"))
                raise
            except EmbeddingError as exc:
                _fail(request, exc)
            except Exception as exc:  # a bug of ours: fail this request, keep serving
                log.exception("embedding request failed unexpectedly")
                _fail(request, EmbeddingCrashed(f"embedding failed unexpectedly: {exc}"))
                await self._discard()
            else:
                if not request.reply.done():
                    request.reply.set_result(vectors)

    async def _call(self, child: _Child, request: _Request) -> Vectors:
        try:
            async with asyncio.timeout(self._time_limit_s):
                await child.send(request.frame)
                reply = await child.receive()
        except TimeoutError:
            await self._discard()
            raise EmbeddingTimeout(
                f"embedding {request.rows} texts took over {self._time_limit_s:g} s; "
                "the embedding process was stopped"
            ) from None
        except (asyncio.IncompleteReadError, ConnectionError):
            reason = await child.death()
            await self._discard()
            raise EmbeddingCrashed(reason) from None
        except EmbeddingCrashed:
            await self._discard()
            raise
        if isinstance(reply, Failed):
            if reply.code == OUT_OF_MEMORY:  # it exits after answering
                await self._discard()
            raise EmbeddingCrashed(reply.reason)
        if not isinstance(reply, Embedded) or reply.rows != request.rows:
            await self._discard()
            raise EmbeddingCrashed("the embedding process answered another request")
        vectors = np.frombuffer(reply.vectors, dtype="<f4")
        return vectors.reshape(reply.rows, self.spec.dimensions).astype(np.float32, copy=False)

    async def _discard(self) -> None:
        async with self._spawning:
            if self._child is not None:
                child, self._child = self._child, None
                await child.stop()

    # Starting the process.

    async def _ensure_child(self) -> _Child:
        async with self._spawning:
            if self._closed:
                raise EmbeddingClosed("the embedding client was closed")
            if self._broken is not None:
                raise self._broken
            if self._child is None or not self._child.process.is_alive():
                if self._child is not None:  # died while idle: not the next request's fault
                    child, self._child = self._child, None
                    await child.stop()
                try:
                    self._child = await self._spawn()
                except EmbeddingUnavailable as exc:
                    if exc.permanent:
                        self._broken = exc
                    raise
            return self._child

    async def _spawn(self) -> _Child:
        starting = asyncio.ensure_future(asyncio.to_thread(self._start_process))
        try:
            process, sock = await asyncio.shield(starting)
        except asyncio.CancelledError:  # closing: stop what the thread starts
            starting.add_done_callback(_discard_started)
            raise
        try:
            reader, writer = await asyncio.open_unix_connection(sock=sock, limit=MAX_FRAME)
        except BaseException:
            _kill(process, sock)
            raise
        child = _Child(process, reader, writer)
        try:
            async with asyncio.timeout(self._start_time_limit_s):
                hello = await child.receive()
        except TimeoutError:
            await child.stop()
            raise EmbeddingUnavailable(
                f"the embedding process did not load its model in {self._start_time_limit_s:g} s"
            ) from None
        except (asyncio.IncompleteReadError, ConnectionError, EmbeddingCrashed):
            reason = await child.death()
            await child.stop()
            raise EmbeddingUnavailable(f"the embedding process could not start: {reason}") from None
        except BaseException:
            await child.stop()
            raise
        if isinstance(hello, Ready) and hello.model == self.spec.name:
            return child
        await child.stop()
        if isinstance(hello, Failed):
            raise EmbeddingUnavailable(hello.reason, permanent=hello.code in (MODEL, OUT_OF_MEMORY))
        raise EmbeddingUnavailable(
            f"the embedding process loaded {getattr(hello, 'model', '?')}, not {self.spec.name} "
            "(the model directory changed under it)",
            permanent=True,
        )

    def _start_process(self) -> tuple[BaseProcess, socket.socket]:
        args = (
            self.spec.directory,
            self._threads,
            self._memory_limit_bytes,
            self._batch_tokens,
            self._nice,
        )
        return start_on_socket(_context, serve, args, name="embedding")


def _fail(request: _Request, error: BaseException) -> None:
    if not request.reply.done():
        request.reply.set_exception(error)


def _discard_started(starting: asyncio.Future[tuple[BaseProcess, socket.socket]]) -> None:
    if not starting.cancelled() and starting.exception() is None:
        _kill(*starting.result())


def _kill(process: BaseProcess, sock: socket.socket) -> None:
    sock.close()
    with contextlib.suppress(ProcessLookupError, ValueError):
        process.kill()
    process.join(10)
    with contextlib.suppress(ValueError):
        process.close()


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:  # a real-time signal has no name
        return f"signal {number}"
