"""The PDF pipeline: worker throughput, memory and enqueue latency against baselines of the same run.

Jobs here are text only (content mode ``pdf_file``: no page images), so the figures are those of
the pipeline around the rendering; bench/render.py measures page images.

1. pages/s: a real worker (``python -m worker``) end to end (claim, GridFS download, child-process
   extraction, page upserts, progress, chapter), against raw PyMuPDF ``page.get_text()`` over the
   same file in this process. Target ratio >= 0.85.
2. peak RSS of the worker's process tree (worker + forkserver + extraction child) for 2,000 pages
   against 20 pages, each in a fresh worker. Target <= 1.3x.
3. enqueue -> processing latency (job created_at -> started_at) over 30 jobs. Target p50 <= 100 ms.

Prints figures; never passes or fails on time.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pymupdf

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bed import bench_env, connected, servers, submit  # noqa: E402
from devstack.embedded import stop  # noqa: E402
from service.domain.chapter import ChapterOptions, ContentMode  # noqa: E402
from service.store.database import Store  # noqa: E402
from tests.support.pdfs import text_pdf  # noqa: E402

# A printed book page holds 250-400 words.
BOOK_PAGE_WORDS = 300
# The pipeline without page images (rendering them is measured by bench/render.py).
TEXT_ONLY = ChapterOptions(content_mode=ContentMode.pdf_file)


REPEATS = 3  # medians of three: single runs of a few hundred ms swing by a third here


def raw_pages_per_second(data: bytes) -> float:
    """Median over REPEATS of open + get_text() on every page, in this process."""
    rates = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        doc = pymupdf.open(stream=data, filetype="pdf")
        for page in doc:
            page.get_text()
        rates.append(doc.page_count / (time.perf_counter() - start))
        doc.close()
    return statistics.median(rates)


def tree_rss_kb(pid: int) -> int:
    total = 0
    stack = [pid]
    while stack:
        current = stack.pop()
        try:
            with open(f"/proc/{current}/status") as status:
                for line in status:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
            for task in os.listdir(f"/proc/{current}/task"):
                with open(f"/proc/{current}/task/{task}/children") as children:
                    stack.extend(int(child) for child in children.read().split())
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total


async def wait_done(store: Store, job_id: str, limit_s: float = 600) -> dict[str, Any]:
    jobs = store.collections.jobs
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        doc = await jobs.find_one({"job_id": job_id})
        if doc and doc["status"] in ("completed", "failed", "cancelled"):
            return doc
        await asyncio.sleep(0.01)
    raise TimeoutError(job_id)


def start_worker(env: dict[str, str]) -> subprocess.Popen[bytes]:
    worker = subprocess.Popen(
        [sys.executable, "-m", "worker"], cwd=ROOT, env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    time.sleep(1.5)  # connected and idle
    return worker


async def run_job_measuring_rss(
    queue: Any, store: Store, env: dict[str, str], data: bytes, name: str
):
    worker = start_worker(env)
    try:
        peak = tree_rss_kb(worker.pid)
        job_id = await submit(store, queue, data, name, TEXT_ONLY)
        jobs = store.collections.jobs
        while True:
            peak = max(peak, tree_rss_kb(worker.pid))
            doc = await jobs.find_one(
                {"job_id": job_id}, {"status": 1, "started_at": 1, "completed_at": 1, "progress": 1}
            )
            if doc["status"] in ("completed", "failed"):
                break
            await asyncio.sleep(0.005)
        doc = await wait_done(job_id)
        return doc, peak
    finally:
        stop(worker)


async def main() -> int:
    with servers("pcj-bench-") as bed:
        env = bench_env(bed)
        async with connected(bed) as (settings, store, queue):
            print("1. throughput: worker end to end vs raw PyMuPDF get_text(), same file, same run")
            worker = start_worker(env)
            try:
                for pages in (300, 2000):
                    data = text_pdf(pages, words=BOOK_PAGE_WORDS)
                    raw = raw_pages_per_second(data)
                    elapsed_runs = []
                    for attempt in range(REPEATS):
                        job_id = await submit(
                            store, queue, data, f"{pages}-{attempt}.pdf", TEXT_ONLY
                        )
                        doc = await wait_done(store, job_id)
                        elapsed_runs.append(
                            (doc["completed_at"] - doc["started_at"]).total_seconds()
                        )
                    elapsed = statistics.median(elapsed_runs)
                    worker_rate = pages / elapsed
                    print(f"   {pages:>5} pages: worker {worker_rate:,.0f} pages/s ({elapsed:.2f} s, claim to "
                          f"completed), raw {raw:,.0f} pages/s, ratio {worker_rate / raw:.2f} "
                          f"(target >= 0.85); {doc['version']} state writes per job")  # fmt: skip
            finally:
                stop(worker)

            print("2. peak RSS of the worker's process tree (fresh worker per job)")
            _, small = await run_job_measuring_rss(
                queue, store, env, text_pdf(20, words=BOOK_PAGE_WORDS), "20.pdf"
            )
            _, large = await run_job_measuring_rss(
                queue, store, env, text_pdf(2000, words=BOOK_PAGE_WORDS), "2000.pdf"
            )
            print(f"   20 pages: {small / 1024:.0f} MB, 2000 pages: {large / 1024:.0f} MB, "
                  f"ratio {large / small:.2f} (target <= 1.3)")  # fmt: skip

            print(
                "3. enqueue -> processing latency (created_at -> started_at), 30 jobs, one idle worker"
            )
            worker = start_worker(env)
            try:
                latencies = []
                small_pdf = text_pdf(1)
                for index in range(30):
                    job_id = await submit(store, queue, small_pdf, f"l{index}.pdf", TEXT_ONLY)
                    doc = await wait_done(store, job_id)
                    latencies.append((doc["started_at"] - doc["created_at"]).total_seconds() * 1000)
            finally:
                stop(worker)
            latencies.sort()
            print(f"   p50 {statistics.median(latencies):.0f} ms, p90 {latencies[int(len(latencies) * 0.9)]:.0f} ms, "
                  f"max {latencies[-1]:.0f} ms (target p50 <= 100 ms; WORKER_POLL_DELAY_S={settings.worker_poll_delay_s})")  # fmt: skip
            return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
