"""service/retrieval/chunker.py: a chapter chunked by a real child process, which runs only on idle
CPU time, and which is killed with its caller or fails with why.

No test asserts on time; waits have generous bounds so a broken client fails instead of hanging.
"""

from __future__ import annotations

import asyncio
import os
import signal

import pytest

from service.domain.errors import ChunkingFailed, EmbeddingError
from service.retrieval.chunker import MODULE, chunk_in_child
from service.retrieval.chunking import ChunkLimits, chunk_chapter
from service.retrieval.terms import term_vectors

WAIT_LIMIT_S = 120.0
OUTLINE = [(1, "Tides and harbours", 1), (2, "Winter ice", 2)]


def _pages(count: int, lines: int = 30) -> list[tuple[int, str]]:
    """Text-heavy pages as PyMuPDF extracts them: a heading on the first two, then lines."""
    pages = []
    for number in range(1, count + 1):
        head = {1: "Tides and harbours\n", 2: "Winter ice\n"}.get(number, "")
        body = "\n".join(
            f"Line {k} of page {number}: ships wait in the harbour for the tide to turn."
            for k in range(lines)
        )
        pages.append((number, head + body))
    return pages


def _children() -> list[int]:
    """This process's chunking processes."""
    found = []
    for task in os.listdir("/proc/self/task"):
        with open(f"/proc/self/task/{task}/children") as children:
            for pid in children.read().split():
                try:
                    with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
                        if MODULE.encode() in cmdline.read():
                            found.append(int(pid))
                except FileNotFoundError:
                    continue
    return found


async def _child_of(task: asyncio.Task) -> int:
    while not task.done():
        if found := _children():
            return found[0]
        await asyncio.sleep(0.001)
    pytest.fail("the chunking ended before its process was seen")


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


async def test_chunks_from_the_child_are_chunk_chapters(spec, counter):
    pages = _pages(12)
    limits = ChunkLimits(max_tokens=counter.budget("passage"))

    chunked = await asyncio.wait_for(
        chunk_in_child(spec, pages, limits=limits, outline=OUTLINE, title="The port"),
        WAIT_LIMIT_S,
    )

    expected = chunk_chapter(
        pages, counter.offsets, outline=OUTLINE, title="The port", limits=limits
    )
    assert chunked.chunks == expected
    assert chunked.terms == term_vectors([chunk.content for chunk in expected])
    assert {chunk.section for chunk in chunked.chunks} == {"Tides and harbours", "Winter ice"}


async def test_a_chapter_without_text_has_no_chunks(spec, counter):
    limits = ChunkLimits(max_tokens=counter.budget("passage"))

    chunked = await asyncio.wait_for(
        chunk_in_child(spec, [(1, ""), (2, "  ")], limits=limits), WAIT_LIMIT_S
    )

    assert chunked.chunks == chunked.terms == []


async def test_the_chunking_process_runs_only_on_idle_cpu(spec, counter):
    limits = ChunkLimits(max_tokens=counter.budget("passage"))
    task = asyncio.create_task(chunk_in_child(spec, _pages(400), limits=limits))
    pid = await asyncio.wait_for(_child_of(task), WAIT_LIMIT_S)
    policies = set()
    while not task.done() and not _gone(pid):  # it lowers its priority as it starts
        try:
            policies.add(os.sched_getscheduler(pid))
        except ProcessLookupError:
            break
        if os.SCHED_IDLE in policies:
            break
        await asyncio.sleep(0.001)

    chunked = await asyncio.wait_for(task, WAIT_LIMIT_S)

    assert os.SCHED_IDLE in policies
    assert chunked.chunks


async def test_a_cancelled_chunking_kills_its_process(spec, counter):
    limits = ChunkLimits(max_tokens=counter.budget("passage"))
    task = asyncio.create_task(chunk_in_child(spec, _pages(400), limits=limits))
    pid = await asyncio.wait_for(_child_of(task), WAIT_LIMIT_S)

    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, WAIT_LIMIT_S)

    assert _gone(pid)
    assert _children() == []


async def test_a_killed_chunking_process_fails_the_call_with_why(spec, counter):
    limits = ChunkLimits(max_tokens=counter.budget("passage"))
    task = asyncio.create_task(chunk_in_child(spec, _pages(400), limits=limits))
    pid = await asyncio.wait_for(_child_of(task), WAIT_LIMIT_S)

    os.kill(pid, signal.SIGKILL)

    with pytest.raises(ChunkingFailed, match="killed") as failed:
        await asyncio.wait_for(task, WAIT_LIMIT_S)
    assert isinstance(failed.value, EmbeddingError)  # the indexer hands the chapter back
    assert _children() == []


async def test_an_error_in_the_chunking_process_is_reported(spec, counter, tmp_path):
    # A tokenizer file that is not one: the child fails as it loads it.
    (tmp_path / "tokenizer.json").write_text("not a tokenizer")
    broken = type(spec)(**{**_fields(spec), "tokenizer_path": str(tmp_path / "tokenizer.json")})
    limits = ChunkLimits(max_tokens=counter.budget("passage"))

    with pytest.raises(ChunkingFailed, match="cannot load the tokenizer"):
        await asyncio.wait_for(chunk_in_child(broken, _pages(2), limits=limits), WAIT_LIMIT_S)


def _fields(spec) -> dict:
    return {name: getattr(spec, name) for name in spec.__struct_fields__}
