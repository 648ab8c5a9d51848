"""Start-up wiring: the arq worker, built from our settings (``create_worker(settings)``).

It outlives Redis outages (``worker/consumer.py``), waits for MongoDB at start-up for as long as
it takes, hands back the jobs of a dead predecessor in its slot and keeps its own liveness record
(``worker/liveness.py``), and runs the sweeper as a task of its own (``worker/sweeper.py``), not in
a job slot.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from arq import Worker, func
from arq.connections import ArqRedis
from prometheus_client import REGISTRY
from pymongo import AsyncMongoClient

from service.backoff import Backoff, pause
from service.domain.errors import MongoUnavailable
from service.retrieval.model import load_model_spec
from service.settings import Settings
from service.store.database import Store
from service.store.doorbell import PROCESS_FUNCTION, create_queue, doorbell_timeout_s
from service.store.mongo import Doc, connect
from service.store.page_images import create_page_store
from worker import metrics
from worker.cancel import cancel_and_wait
from worker.consumer import SHUT_DOWN, STARTED, Consumer
from worker.dependency import MONGODB
from worker.indexing.indexer import Indexer, embedding_process
from worker.liveness import come_alive, stop_living
from worker.rendering import ocr
from worker.rendering.pool import RenderPool
from worker.run.task import process_pdf_chapter
from worker.sweeper import keep_sweeping, stop_sweeping

log = logging.getLogger("worker.wiring")
# Runs of one doorbell arq allows (see create_worker).
DOORBELL_TRIES = 1000
# How often a worker started during a MongoDB outage asks again (each ask waits
# MONGODB_STARTUP_WAIT_S itself).
MONGODB_BACKOFF = Backoff(first_s=1.0, max_s=5.0)


def create_render_pool(settings: Settings) -> RenderPool:
    """The worker's render processes, shared by its jobs, sized and capped by its settings."""
    return RenderPool(
        processes=settings.render_processes,
        memory_limit_bytes=settings.job_memory_limit_mb * 1024 * 1024,
        # No page may take longer than its whole job may.
        page_time_limit_s=min(settings.page_time_limit_s, settings.job_time_limit_s),
    )


async def startup(ctx: dict[str, Any]) -> None:
    settings: Settings = ctx["settings"]
    if settings.ocr != "off":
        # A language missing from the tessdata directory is a setting to fix, not a page warning
        # on every scan: the worker says so and refuses to start.
        ocr.check(settings.ocr_languages, settings.ocr_tessdata)
    # The embedding model is checked (files, sha256) now; its process starts with the first
    # chapter to index.
    spec = load_model_spec(settings.embedding_model_dir)
    # Started now, not inside the first job: the forkserver's start imports PyMuPDF.
    ctx["render_pool"] = pool = create_render_pool(settings)
    await pool.start()
    metrics.HEARTBEAT.set_to_current_time()
    client = ctx.get("mongo_client")  # tests hand in the client their app already holds
    if client is None:
        client = await _connect(settings)
        ctx["owns_mongo_client"] = True
    db = client[settings.mongodb_db]
    ctx["store"] = store = Store.of(client, settings, create_page_store(settings, db))
    ctx["embeddings"] = embeddings = embedding_process(settings, spec)
    ctx["indexer"] = indexer = Indexer(store, settings, spec, embeddings)
    # Before the first job: a predecessor's jobs go back first, then this worker is alive.
    await come_alive(ctx)
    if ctx.get("sweeper_enabled"):  # after the page store: a sweep may discard a lost job's
        ctx["sweeper"] = asyncio.create_task(keep_sweeping(ctx), name="sweeper")
        if settings.index_chapters:
            ctx["indexing"] = asyncio.create_task(indexer.run(), name="indexer")
    ctx[STARTED] = True


async def _connect(settings: Settings) -> AsyncMongoClient[Doc]:
    """MongoDB, however long it takes to come up: a worker started during an outage waits."""
    delays = MONGODB_BACKOFF.delays()
    while True:
        try:
            client = await connect(settings)
        except MongoUnavailable as exc:
            MONGODB.down(exc)
            log.warning("still waiting for MongoDB; jobs start once it answers")
            await pause(next(delays))
            continue
        MONGODB.up()
        return client


async def shutdown(ctx: dict[str, Any]) -> None:
    ctx[SHUT_DOWN] = True
    if "sweeper" in ctx:
        await stop_sweeping(ctx, ctx.pop("sweeper"))
    if "indexing" in ctx:
        await cancel_and_wait(ctx.pop("indexing"))  # it hands its chapter back on the way
    if "embeddings" in ctx:
        await ctx.pop("embeddings").aclose()
    await stop_living(ctx)
    # A startup that failed part way (MongoDB down, bad S3 settings) has not made them all.
    if "render_pool" in ctx:
        await ctx["render_pool"].aclose()
    if "store" in ctx:
        store: Store = ctx["store"]
        await store.images.aclose()
        if ctx.get("owns_mongo_client"):
            await store.client.close()
    # What this process did, for whoever restarts workers (a deploy, the chaos tests): its
    # counters go with it.
    log.info(
        "worker stopped: %d pages rendered, %d stored",
        REGISTRY.get_sample_value("pcj_worker_pages_rendered_total") or 0,
        REGISTRY.get_sample_value("pcj_worker_pages_processed_total") or 0,
    )


def create_worker(settings: Settings, **overrides: Any) -> Worker:
    """An arq worker for the PDF pipeline; tests pass ``burst=True, redis_pool=...``.

    A burst worker (tests, one-off runs) neither sweeps nor indexes.
    """
    options: dict[str, Any] = {
        "functions": [
            func(
                process_pdf_chapter,
                name=PROCESS_FUNCTION,
                timeout=doorbell_timeout_s(settings),
                # MongoDB, not arq, decides whether a job runs: the claim guards it, and
                # JOB_MAX_ATTEMPTS bounds the runs lost to dead workers. arq retries a doorbell
                # only when its run was cancelled by a stopping worker, which hands the job back:
                # under rolling deploys that happens many times to a long job, and each must
                # find the doorbell still there.
                max_tries=DOORBELL_TRIES,
            )
        ],
        "on_startup": startup,
        "on_shutdown": shutdown,
        "ctx": {
            "settings": settings,
            "sweeper_enabled": not overrides.get("burst", False),
            **overrides.pop("ctx", {}),
        },
        "max_jobs": settings.worker_concurrency,
        "poll_delay": settings.worker_poll_delay_s,
        "keep_result": 60,
        "job_timeout": doorbell_timeout_s(settings),
    }
    if "redis_pool" not in overrides:
        # Our own pool: connects lazily with short timeouts (arq's own gives up after 5 tries).
        options["redis_pool"] = create_queue(settings)
    options.update(overrides)
    return Consumer(**options)


__all__ = ["ArqRedis", "create_worker"]
