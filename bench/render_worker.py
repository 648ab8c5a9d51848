"""The worker end to end on page images: a real ``python -m worker`` on an embedded mongod and
redis-server, rendering every page to WebP into GridFS (``PAGE_STORE=gridfs``).

1. pages/s from claim to completed (``started_at`` -> ``completed_at``) with ``RENDER_PROCESSES=1``
   and ``=2``, on the PDF ``bench/render.py`` measured raw (median of ``REPEATS`` jobs);
2. peak RSS of the worker's process tree (worker, forkserver, render processes), a fresh
   ``RENDER_PROCESSES=2`` worker per job, 2,000 pages against 20;
3. enqueue -> first page image fetchable: from the enqueue until page 1's image is listed on
   its chunk and reads whole from the page store (what ``GET /api/v1/page-images/...`` streams),
   over ``SAMPLES`` jobs on one idle worker.

Used by ``bench/render.py`` (``worker_figures``), which prints the ratios against its baselines.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from dataclasses import dataclass
from typing import Any

from bench.bed import bench_env, connected, enqueue, servers, submit, upload
from bench.pipeline import start_worker, tree_rss_kb, wait_done
from devstack.embedded import stop
from service.store.database import Store
from tests.support.pdfs import drawing_pdf, figure_heavy_pdf

REPEATS = 2
SAMPLES = 10


@dataclass
class WorkerFigures:
    """What ``worker_figures`` measured."""

    rate: dict[int, float]  # RENDER_PROCESSES -> pages/s, claim to completed
    rss_small_mb: float
    rss_large_mb: float
    first_image_ms: list[float]


async def _rate(
    queue: Any, store: Store, env: dict[str, str], data: bytes, pages: int, processes: int
) -> float:
    worker = start_worker({**env, "RENDER_PROCESSES": str(processes)})
    try:
        await wait_done(store, await submit(store, queue, figure_heavy_pdf(2), "warm.pdf"))
        seconds = []
        for attempt in range(REPEATS):
            job_id = await submit(store, queue, data, f"r{processes}-{attempt}.pdf")
            doc = await wait_done(store, job_id)
            assert doc["status"] == "completed", doc.get("error")
            seconds.append((doc["completed_at"] - doc["started_at"]).total_seconds())
        return float(pages / statistics.median(seconds))
    finally:
        stop(worker)


async def _peak_rss_mb(
    queue: Any, store: Store, env: dict[str, str], data: bytes, name: str
) -> float:
    worker = start_worker({**env, "RENDER_PROCESSES": "2"})
    try:
        peak = tree_rss_kb(worker.pid)
        job_id = await submit(store, queue, data, name)
        jobs = store.collections.jobs
        while ((await jobs.find_one({"job_id": job_id}, {"status": 1})) or {}).get(
            "status"
        ) not in (
            "completed",
            "failed",
        ):
            peak = max(peak, tree_rss_kb(worker.pid))
            await asyncio.sleep(0.02)
        return peak / 1024
    finally:
        stop(worker)


async def _first_image_ms(queue: Any, store: Store, env: dict[str, str]) -> list[float]:
    chunks = store.collections.pages
    worker = start_worker({**env, "RENDER_PROCESSES": "2"})
    samples = []
    try:
        await wait_done(store, await submit(store, queue, figure_heavy_pdf(2), "warm.pdf"))
        data = figure_heavy_pdf(20)
        for index in range(SAMPLES):
            # The upload is not part of it: the clock starts at the enqueue.
            file_id = await upload(store, data, f"first-{index}.pdf")
            start = time.perf_counter()
            job_id = await enqueue(store, queue, file_id)
            while True:
                chunk = await chunks.find_one({"job_id": job_id, "page_index": 0}, {"image": 1})
                if chunk and chunk.get("image"):
                    image = await store.images.open(chunk["image"]["key"])
                    if image is not None and await image.read():
                        break
                await asyncio.sleep(0.005)
            samples.append(1000 * (time.perf_counter() - start))
            await wait_done(store, job_id)
    finally:
        stop(worker)
    return samples


async def worker_figures(pages: int, rss_pages: int) -> WorkerFigures:
    """Every figure above, on a fresh mongod and redis-server in a temporary directory."""
    with servers("pcj-bench-") as bed:
        env = bench_env(bed, PAGE_STORE="gridfs", WORKER_CONCURRENCY="1")
        async with connected(bed) as (_, store, queue):
            data = figure_heavy_pdf(pages)
            rate = {n: await _rate(queue, store, env, data, pages, n) for n in (1, 2)}
            small = await _peak_rss_mb(queue, store, env, drawing_pdf(20), "20.pdf")
            large = await _peak_rss_mb(queue, store, env, drawing_pdf(rss_pages), "long.pdf")
            first = await _first_image_ms(queue, store, env)
            return WorkerFigures(rate, small, large, first)
