"""The worker end to end on page images: a real ``python -m worker`` on an embedded mongod and
redis-server, rendering every page to WebP into GridFS (``PAGE_STORE=gridfs``).

1. pages/s from claim to completed (``started_at`` -> ``completed_at``) with ``RENDER_PROCESSES=1``
   and ``=2``, on the PDF ``bench/render.py`` measured raw (median of ``REPEATS`` jobs);
2. peak RSS of the worker's process tree (worker, forkserver, render processes), a fresh
   ``RENDER_PROCESSES=2`` worker per job, 2,000 pages against 20;
3. enqueue -> first page image fetchable: from ``create_job`` until page 1's image is listed on
   its chunk and reads whole from the page store (what ``GET /api/v1/page-images/...`` streams),
   over ``SAMPLES`` jobs on one idle worker.

Used by ``bench/render.py`` (``worker_figures``), which prints the ratios against its baselines.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from bench.bed import bench_env, connected, servers
from bench.pipeline import start_worker, submit, tree_rss_kb, wait_done
from devstack.embedded import stop
from service.domain.chapter import ChapterOptions
from service.store.documents import DocumentChunk, PdfChapterJob
from service.store.files import store_pdf
from service.store.gridfs_page_store import GridFSPageStore
from service.store.job_store import create_job
from tests.pdfs import drawing_pdf, figure_heavy_pdf

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
    queue: Any, db: Any, env: dict[str, str], data: bytes, pages: int, processes: int
) -> float:
    worker = start_worker({**env, "RENDER_PROCESSES": str(processes)})
    try:
        await wait_done(await submit(queue, db, figure_heavy_pdf(2), "warm.pdf"))
        seconds = []
        for attempt in range(REPEATS):
            doc = await wait_done(await submit(queue, db, data, f"r{processes}-{attempt}.pdf"))
            assert doc["status"] == "completed", doc.get("error")
            seconds.append((doc["completed_at"] - doc["started_at"]).total_seconds())
        return float(pages / statistics.median(seconds))
    finally:
        stop(worker)


async def _peak_rss_mb(queue: Any, db: Any, env: dict[str, str], data: bytes, name: str) -> float:
    worker = start_worker({**env, "RENDER_PROCESSES": "2"})
    try:
        peak = tree_rss_kb(worker.pid)
        job_id = await submit(queue, db, data, name)
        jobs = PdfChapterJob.get_pymongo_collection()
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


async def _first_image_ms(queue: Any, db: Any, env: dict[str, str]) -> list[float]:
    store = GridFSPageStore(db)
    chunks = DocumentChunk.get_pymongo_collection()
    worker = start_worker({**env, "RENDER_PROCESSES": "2"})
    samples = []
    try:
        await wait_done(await submit(queue, db, figure_heavy_pdf(2), "warm.pdf"))
        data = figure_heavy_pdf(20)
        for index in range(SAMPLES):
            # The upload is not part of it: the clock starts at create_job (the enqueue).
            file_id = await _upload(db, data, f"first-{index}.pdf")
            start = time.perf_counter()
            job = await create_job(
                queue, db, user_id="bench", book_id="b", file_id=file_id, options=ChapterOptions()
            )
            job_id = str(job["job_id"])
            while True:
                chunk = await chunks.find_one({"job_id": job_id, "chunk_index": 0}, {"image": 1})
                if chunk and chunk.get("image"):
                    image = await store.open(chunk["image"]["key"])
                    if image is not None and await image.read():
                        break
                await asyncio.sleep(0.005)
            samples.append(1000 * (time.perf_counter() - start))
            await wait_done(job_id)
    finally:
        stop(worker)
    return samples


async def _upload(db: Any, data: bytes, name: str) -> str:
    async def chunks() -> AsyncIterator[bytes]:
        yield data

    stored = await store_pdf(
        db, user_id="bench", filename=name, content_type="application/pdf",
        chunks=chunks(), max_bytes=1 << 31,
    )  # fmt: skip
    return stored.file_id


async def worker_figures(pages: int, rss_pages: int) -> WorkerFigures:
    """Every figure above, on a fresh mongod and redis-server in a temporary directory."""
    with servers("pcj-bench-") as bed:
        env = bench_env(bed, PAGE_STORE="gridfs", WORKER_CONCURRENCY="1")
        async with connected(bed) as (_, mongo, queue):
            data = figure_heavy_pdf(pages)
            rate = {n: await _rate(queue, mongo.db, env, data, pages, n) for n in (1, 2)}
            small = await _peak_rss_mb(queue, mongo.db, env, drawing_pdf(20), "20.pdf")
            large = await _peak_rss_mb(queue, mongo.db, env, drawing_pdf(rss_pages), "long.pdf")
            first = await _first_image_ms(queue, mongo.db, env)
            return WorkerFigures(rate, small, large, first)
