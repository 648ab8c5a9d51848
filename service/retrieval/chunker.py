"""A chapter cut into passages in a child process that runs only on CPU time nobody else wants.

    chunks = await chunk_in_child(spec, pages, outline=toc, title=title, limits=limits)

Same result as ``chunk_chapter(pages, TokenCounter(spec).offsets, ...)`` with each passage's
term vector (``terms.term_vectors``, what keyword search reads), computed elsewhere.
Why not in a thread of the worker (measured by bench/indexing.py on 2 shared cores):
``chunk_chapter`` is pure Python, about 1 CPU-second for 300 text-heavy pages (4-5 for 1,200),
and a thread running it holds the GIL. The worker's event loop, which drives the jobs being
rendered, then waits for the GIL each time it comes back from I/O: while a 1,200-page chapter
was chunked, the jobs of a stream took 2-4x as long to complete. Its memory peaks high too
(RSS +0.37 GB for 1,200 pages, +1.5 GB for 5,000, nearly all of it the tokenizer's offsets
of the whole text), which a long-lived worker may keep.

In a child process the worker's loop keeps its GIL, the child gets the CPU only when no process
of normal priority wants it (``SCHED_IDLE``; nice 19 where that policy does not exist), and its
memory goes back to the system when it exits. One process per chapter, started fresh with
``python -m service.retrieval.chunker``: its start (an interpreter and the tokenizer, ~0.25
CPU-seconds) is small beside embedding the chapter (minutes of CPU for 300 pages). Request and
reply are msgpack on its stdin and stdout, decoded into exact types (never pickle). It dies with
its parent, and a caller that is cancelled kills it.

``ChunkingFailed`` (an ``EmbeddingError``: the indexer hands the chapter back and tries again,
up to its attempts) when the process ends without a reply: killed (the OOM killer, an
operator), or an error of ours, whose last line it reports.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import sys
from collections.abc import Sequence

import msgspec

from service.domain.errors import ChunkingFailed
from service.retrieval.chunking import Chunk, ChunkLimits, Outline, chunk_chapter
from service.retrieval.model import ModelSpec

MODULE = "service.retrieval.chunker"
_PR_SET_PDEATHSIG = 1


class Request(msgspec.Struct, frozen=True):
    """What ``chunk_chapter`` needs, and the model whose tokenizer counts."""

    spec: ModelSpec
    pages: list[tuple[int, str]]
    outline: list[tuple[int, str, int]]
    title: str | None
    limits: ChunkLimits


class Chunked(msgspec.Struct, frozen=True):
    """The chapter's passages and, for each, its term vector (``terms.term_vector``)."""

    chunks: list[Chunk]
    terms: list[bytes]


_REQUESTS = msgspec.msgpack.Decoder(Request)
_CHUNKED = msgspec.msgpack.Decoder(Chunked)


async def chunk_in_child(
    spec: ModelSpec,
    pages: Sequence[tuple[int, str]],
    *,
    limits: ChunkLimits,
    outline: Outline | None = None,
    title: str | None = None,
) -> Chunked:
    """The chapter's passages and their term vectors, made by a child process (see the module
    docstring)."""
    request = msgspec.msgpack.encode(Request(spec, list(pages), list(outline or []), title, limits))
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-m", MODULE,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        out, err = await child.communicate(request)
    except BaseException:  # cancelled: nobody wants its chunks any more
        with contextlib.suppress(ProcessLookupError):
            child.kill()
        await asyncio.shield(child.wait())
        raise
    if child.returncode != 0:
        raise ChunkingFailed(_why(child.returncode, err))
    try:
        chunked = _CHUNKED.decode(out)
    except msgspec.DecodeError:
        raise ChunkingFailed("the chunking process sent a malformed reply") from None
    if len(chunked.terms) != len(chunked.chunks):
        raise ChunkingFailed("the chunking process sent fewer term vectors than passages")
    return chunked


def _why(code: int | None, err: bytes) -> str:
    if code is not None and code < 0:
        if -code == signal.SIGKILL:
            return "the chunking process was killed (SIGKILL: out of memory, or an operator)"
        try:
            name = signal.Signals(-code).name
        except ValueError:  # a real-time signal has no name
            name = f"signal {-code}"
        return f"the chunking process crashed ({name})"
    lines = err.decode(errors="replace").strip().splitlines()
    return f"the chunking process failed: {lines[-1] if lines else f'exit {code}'}"


def lower_priority() -> None:
    """Run only on CPU time no process of normal priority wants (``SCHED_IDLE``): unlike a nice
    value, that also holds against processes of other sessions and cgroups. Nice 19 where the
    policy does not exist."""
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    except (AttributeError, OSError):
        with contextlib.suppress(OSError):
            os.nice(19)


def _die_with_parent() -> None:
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def main() -> int:
    """The child: one request on stdin, its chunks on stdout."""
    _die_with_parent()
    lower_priority()
    # One text at a time: tokenizers' thread pool would only add threads.
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    from service.retrieval.terms import term_vectors
    from service.retrieval.tokens import TokenCounter

    request = _REQUESTS.decode(sys.stdin.buffer.read())
    counter = TokenCounter(request.spec)
    chunks = chunk_chapter(
        request.pages, counter.offsets, outline=request.outline, title=request.title,
        limits=request.limits,
    )  # fmt: skip
    terms = term_vectors([chunk.content for chunk in chunks])
    sys.stdout.buffer.write(msgspec.msgpack.encode(Chunked(chunks, terms)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
