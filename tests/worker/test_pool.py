"""worker/rendering/pool.py: render processes shared by jobs, each failure confined to the job that caused it.

Real processes rendering real (generated) PDFs. ``tests/support/render_hook.py`` runs in each render
process before a page: it logs which process rendered which page, and crashes, kills or hangs
the process on the page a file's name asks for.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import signal
import time
from collections import Counter

import pytest
from PIL import Image

from tests.support.pdfs import (
    drawing_pdf,
    encrypted_pdf,
    figure_heavy_pdf,
    garbage_after_header,
    memory_bomb_pdf,
    nested_forms_pdf,
    text_pdf,
    truncated_before_pages_pdf,
    truncated_tail_pdf,
    zero_page_pdf,
)
from tests.support.render_hook import misbehave, page_log, rendered
from worker.rendering.page import ExtractionError, RenderOptions
from worker.rendering.pool import PoolClosed, RenderPool

TEXT_ONLY = RenderOptions(render_images=False)
# A bound on waits for something that takes a moment, so that a broken pool fails its test
# instead of hanging the run (there is no pytest-timeout): generous, never a timing check.
WAIT_LIMIT_S = 60.0


@pytest.fixture
async def pool_factory():
    """``await pool_factory(processes=2, memory_mb=1024, page_time_limit_s=60, **options)``."""
    pools = []

    async def make(processes=2, memory_mb=1024, page_time_limit_s=60.0, **options):
        pool = RenderPool(
            processes, memory_mb * 1024 * 1024, page_time_limit_s, page_hook=misbehave, **options
        )
        await pool.start()
        pools.append(pool)
        return pool

    yield make
    for pool in pools:
        await pool.aclose()


@pytest.fixture
def pdf(tmp_path):
    """``pdf(name, data)``: write a PDF under ``name``, return its path."""

    def write(name: str, data: bytes) -> str:
        path = tmp_path / name
        path.write_bytes(data)
        return str(path)

    return write


async def collect(pool, path, options=TEXT_ONLY, indices=None):
    """Every page of ``path``, by index."""
    if indices is None:
        indices = range((await pool.open(path)).page_count)
    pages = {}
    async with contextlib.aclosing(pool.render(path, indices, options)) as stream:
        async for page in stream:
            assert page.index not in pages
            pages[page.index] = page
    return pages


async def test_pages_of_two_jobs_are_rendered_once_each_over_both_processes(pool_factory, pdf):
    pool = await pool_factory(processes=2)
    first, second = pdf("first.pdf", figure_heavy_pdf(6)), pdf("second.pdf", drawing_pdf(6))

    pages_a, pages_b = await asyncio.gather(
        collect(pool, first, RenderOptions()), collect(pool, second, RenderOptions())
    )

    assert sorted(pages_a) == sorted(pages_b) == list(range(6))
    for page in [*pages_a.values(), *pages_b.values()]:
        assert Image.open(io.BytesIO(page.image.data)).size == (1240, 1755)
    log = rendered(first) + rendered(second)
    assert Counter(index for _, index in rendered(first)) == dict.fromkeys(range(6), 1)
    assert {pid for pid, _ in log} == set(pool.pids)  # both processes worked


async def test_one_jobs_pages_are_split_across_the_processes(pool_factory, pdf):
    pool = await pool_factory(processes=2)
    path = pdf("one.pdf", drawing_pdf(8))

    pages = await collect(pool, path, RenderOptions())

    assert sorted(pages) == list(range(8))
    assert {pid for pid, _ in rendered(path)} == set(pool.pids)


async def test_a_short_job_is_not_queued_behind_a_long_one(pool_factory, pdf, tmp_path):
    pool = await pool_factory(processes=1, read_ahead=2)
    long, short = pdf("long.pdf", text_pdf(30)), pdf("short.pdf", text_pdf(3))

    await asyncio.gather(
        collect(pool, long, indices=range(30)), collect(pool, short, indices=range(3))
    )

    # One process, so the log is the order pages were rendered in; the short job came second.
    order = [name for _, name, _ in page_log(tmp_path)]
    last_short = len(order) - 1 - order[::-1].index("short.pdf")
    assert len(order) == 33
    # Round robin between jobs: long, short, long, short, long, short (FIFO would be 30 long).
    assert order[:last_short].count("long.pdf") <= 4


async def test_a_crash_fails_only_the_job_whose_page_caused_it(pool_factory, pdf):
    pool = await pool_factory(processes=2)
    crashing = pdf("abort-at-2.pdf", text_pdf(6))
    healthy = pdf("healthy.pdf", text_pdf(40))
    before = set(pool.pids)

    crashed, pages = await asyncio.gather(
        collect(pool, crashing), collect(pool, healthy), return_exceptions=True
    )

    assert isinstance(crashed, ExtractionError)
    assert (crashed.code, crashed.reason) == ("PDF_CRASHED", "PDF processing crashed (SIGABRT)")
    assert sorted(pages) == list(range(40))
    # The crashed process is replaced in the background: on a busy machine the other job can
    # finish first. Wait for it (bounded), then check exactly one process is new.
    for _ in range(200):
        if set(pool.pids) - before - {None}:
            break
        await asyncio.sleep(0.05)
    assert len(set(pool.pids) - before - {None}) == 1  # the crashed process was replaced
    assert sorted(await collect(pool, pdf("after.pdf", text_pdf(4)))) == [0, 1, 2, 3]


async def test_a_killed_process_fails_its_job_as_out_of_memory(pool_factory, pdf):
    pool = await pool_factory(processes=2)
    killed = pdf("kill-at-0.pdf", text_pdf(3))
    healthy = pdf("healthy.pdf", text_pdf(20))

    result, pages = await asyncio.gather(
        collect(pool, killed), collect(pool, healthy), return_exceptions=True
    )

    assert isinstance(result, ExtractionError)
    assert (result.code, result.reason) == ("OUT_OF_MEMORY", "Out of memory")
    assert sorted(pages) == list(range(20))


async def test_a_page_over_the_memory_cap_fails_only_its_job(pool_factory, pdf):
    # 64 MB: room for A4 pages at 150 DPI (about 40 MB with buffers kept for reuse), not for
    # the bomb's hundreds of megabytes of text.
    pool = await pool_factory(processes=1, memory_mb=64)
    bomb = pdf("bomb.pdf", memory_bomb_pdf())
    healthy = pdf("healthy.pdf", drawing_pdf(3))

    result, pages = await asyncio.gather(
        collect(pool, bomb), collect(pool, healthy, RenderOptions()), return_exceptions=True
    )

    assert isinstance(result, ExtractionError)
    assert result.code == "OUT_OF_MEMORY"
    assert sorted(pages) == [0, 1, 2]


async def test_a_hung_page_times_out_and_the_other_job_completes(pool_factory, pdf):
    pool = await pool_factory(processes=2, page_time_limit_s=1.0)
    hung = pdf("hang-at-1.pdf", text_pdf(4))
    healthy = pdf("healthy.pdf", text_pdf(30))

    result, pages = await asyncio.gather(
        collect(pool, hung), collect(pool, healthy), return_exceptions=True
    )

    assert isinstance(result, ExtractionError)
    assert (result.code, result.reason) == ("TIMEOUT", "PDF page 2 timed out after 1 s")
    assert sorted(pages) == list(range(30))


async def test_a_truncated_pdf_is_flagged_repaired_with_its_warnings(pool_factory, pdf):
    pool = await pool_factory()
    path = pdf("cut.pdf", truncated_tail_pdf())

    info = await pool.open(path)
    pages = await collect(pool, path)

    assert info.repaired is True
    assert "repairing PDF document" in info.warnings
    assert sorted(pages) == list(range(5))
    assert all(page.repaired for page in pages.values())
    assert "Page 5 of 5" in pages[4].text


@pytest.mark.parametrize(
    ("make", "code"),
    [
        (truncated_before_pages_pdf, "PDF_CORRUPT"),
        (garbage_after_header, "PDF_CORRUPT"),
        (encrypted_pdf, "PDF_ENCRYPTED"),
        (zero_page_pdf, "PDF_EMPTY"),
    ],
)
async def test_a_document_that_cannot_be_opened_fails_clearly(pool_factory, pdf, make, code):
    pool = await pool_factory(processes=1)
    before = pool.pids

    with pytest.raises(ExtractionError) as caught:
        await pool.open(pdf("bad.pdf", make()))

    assert caught.value.code == code
    assert pool.pids == before  # a clean refusal, not a crash: the process stays


async def test_a_consumer_that_stops_drops_its_queued_pages(pool_factory, pdf):
    pool = await pool_factory(processes=2, read_ahead=3)
    path = pdf("stopped.pdf", text_pdf(60))

    taken = []
    async with contextlib.aclosing(pool.render(path, range(60), TEXT_ONLY)) as pages:
        async for page in pages:
            taken.append(page.index)
            if len(taken) == 2:
                break
    await collect(pool, pdf("next.pdf", text_pdf(10)))  # the processes are free again

    assert len(taken) == 2
    # Never more than the taken pages plus the read-ahead went to a process.
    assert len(rendered(path)) <= 2 + 3


async def test_a_slow_consumer_holds_back_its_job_not_the_pool(pool_factory, pdf):
    pool = await pool_factory(processes=2, read_ahead=2)
    slow = pdf("slow.pdf", text_pdf(50))
    other = pdf("other.pdf", text_pdf(30))

    pages = pool.render(slow, range(50), TEXT_ONLY)
    first = await anext(pages)
    done_meanwhile = await collect(pool, other)  # while nobody takes the slow job's pages
    held_back = len(rendered(slow))
    rest = [page async for page in pages]

    assert first.index in range(50)
    assert sorted(done_meanwhile) == list(range(30))
    assert held_back <= 1 + 2
    assert sorted([first.index, *(page.index for page in rest)]) == list(range(50))


async def test_closing_the_pool_fails_waiting_jobs_with_pool_closed(pool_factory, pdf):
    pool = await pool_factory(processes=1)
    hung = pdf("hang-at-0.pdf", text_pdf(2))
    waiting = asyncio.create_task(collect(pool, hung, indices=range(2)))
    deadline = time.monotonic() + WAIT_LIMIT_S
    while not rendered(hung):  # polled: written by the render process
        assert time.monotonic() < deadline, "the render process never started the hung page"
        await asyncio.sleep(0.01)

    await pool.aclose()

    with pytest.raises(PoolClosed):
        await waiting
    with pytest.raises(PoolClosed):
        await pool.open(hung)


async def test_a_process_killed_while_idle_is_replaced_and_no_job_is_blamed(pool_factory, pdf):
    pool = await pool_factory(processes=1)
    victim = pool.pids[0]
    os.kill(victim, signal.SIGKILL)
    await asyncio.to_thread(_wait_until_reaped, victim)

    pages = await collect(pool, pdf("after.pdf", text_pdf(3)))

    assert sorted(pages) == [0, 1, 2]
    assert pool.pids != [victim]


def _wait_until_reaped(pid: int) -> None:
    deadline = time.monotonic() + WAIT_LIMIT_S
    while os.path.exists(f"/proc/{pid}"):
        assert time.monotonic() < deadline, f"the killed render process {pid} was never reaped"
        time.sleep(0.01)


async def _until_rendering(path, pages):
    """Until the render processes have started ``pages`` pages of ``path`` (the hook's log)."""
    for _ in range(int(WAIT_LIMIT_S / 0.01)):
        if len(rendered(path)) >= pages:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{pages} pages of {path} not started within {WAIT_LIMIT_S:g} s")


async def _first_page_of(pool, path, owner):
    async with contextlib.aclosing(pool.render(path, [0], TEXT_ONLY, owner)) as pages:
        return await anext(pages)


@pytest.mark.parametrize("processes", [1, 2])
async def test_a_job_holding_every_process_with_slow_pages_gives_one_to_a_waiting_job(
    pool_factory, pdf, processes
):
    # Both processes (or the one) busy with pages that take hours: without preemption the other
    # job waits until PAGE_TIME_LIMIT_S (60 s here) fails them.
    pool = await pool_factory(processes=processes, slow_page_s=0.4)
    hours = pdf("hours.pdf", nested_forms_pdf(processes, levels=30))
    stuck = pool.render(hours, range(processes), TEXT_ONLY, "user-a")
    stuck_task = asyncio.create_task(anext(stuck))
    await _until_rendering(hours, processes)  # every process has one of its pages
    quick = pdf("quick.pdf", text_pdf(1))
    before = list(pool.pids)

    page = await asyncio.wait_for(_first_page_of(pool, quick, "user-b"), WAIT_LIMIT_S)

    assert page.index == 0
    assert "Page 1 of 1" in page.text
    assert not stuck_task.done()  # the slow job goes on, demoted, with its page queued again
    assert len(set(pool.pids) - set(before)) == 1  # one process was taken back and replaced
    stuck_task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await stuck_task
    await stuck.aclose()


async def test_a_slow_page_of_a_job_within_its_share_is_not_preempted(pool_factory, pdf):
    # One slow page on one of two processes: the other job has a free process, nothing is killed.
    pool = await pool_factory(processes=2, slow_page_s=0.2)
    hours = pdf("hours.pdf", nested_forms_pdf(1, levels=30))
    stuck = pool.render(hours, [0], TEXT_ONLY, "user-a")
    stuck_task = asyncio.create_task(anext(stuck))
    await _until_rendering(hours, 1)
    before = list(pool.pids)

    pages = []
    for n in range(3):  # one after the other, each while the slow page renders
        quick = pdf(f"quick{n}.pdf", text_pdf(1))
        pages.append(await asyncio.wait_for(_first_page_of(pool, quick, "user-b"), WAIT_LIMIT_S))

    assert [page.index for page in pages] == [0, 0, 0]
    assert pool.pids == before
    stuck_task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await stuck_task
    await stuck.aclose()
