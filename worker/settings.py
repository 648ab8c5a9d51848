"""The arq worker, built from our settings (``create_worker(settings)``)."""

from __future__ import annotations

from typing import Any

from arq import Worker, cron, func
from arq.connections import ArqRedis, RedisSettings

from service.settings import Settings
from service.store.doorbell import PROCESS_FUNCTION
from service.store.mongo import connect
from service.store.page_images import create_page_store
from worker import metrics
from worker.pool import RenderPool
from worker.sweeper import sweep
from worker.task import process_pdf_chapter


def create_render_pool(settings: Settings) -> RenderPool:
    """The worker's render processes, shared by its jobs, sized and capped by its settings."""
    return RenderPool(
        processes=settings.render_processes,
        memory_limit_bytes=settings.job_memory_limit_mb * 1024 * 1024,
        # No page may take longer than its whole job may.
        page_time_limit_s=min(settings.page_time_limit_s, settings.job_time_limit_s),
    )


async def startup(ctx: dict[str, Any]) -> None:
    # Started now, not inside the first job: the forkserver's start imports PyMuPDF.
    ctx["render_pool"] = pool = create_render_pool(ctx["settings"])
    await pool.start()
    metrics.HEARTBEAT.set_to_current_time()
    if "mongo" not in ctx:  # tests hand in the connection their app already holds
        ctx["mongo"] = await connect(ctx["settings"])
        ctx["owns_mongo"] = True
    ctx["page_store"] = create_page_store(ctx["settings"], ctx["mongo"].db)


async def shutdown(ctx: dict[str, Any]) -> None:
    # A startup that failed part way (MongoDB down, bad S3 settings) has not made them all.
    if "render_pool" in ctx:
        await ctx["render_pool"].aclose()
    if "page_store" in ctx:
        await ctx["page_store"].aclose()
    if ctx.get("owns_mongo"):
        await ctx["mongo"].close()


def create_worker(settings: Settings, **overrides: Any) -> Worker:
    """An arq worker for the PDF pipeline; tests pass ``burst=True, redis_pool=...``."""
    every = settings.sweep_interval_s
    options: dict[str, Any] = {
        "functions": [
            func(
                process_pdf_chapter,
                name=PROCESS_FUNCTION,
                timeout=settings.job_time_limit_s + 120,
                # MongoDB, not arq, decides whether a job runs: the claim guards it.
                max_tries=settings.job_max_attempts + 2,
            )
        ],
        "cron_jobs": [
            cron(
                sweep,
                second=set(range(0, 60, every)) if every < 60 else {0},
                run_at_startup=True,
                unique=False,
                timeout=60,
            )
        ],
        "on_startup": startup,
        "on_shutdown": shutdown,
        "ctx": {"settings": settings, **overrides.pop("ctx", {})},
        "max_jobs": settings.worker_concurrency,
        "poll_delay": settings.worker_poll_delay_s,
        "keep_result": 60,
        "job_timeout": settings.job_time_limit_s + 120,
    }
    if "redis_pool" not in overrides:
        options["redis_settings"] = RedisSettings.from_dsn(settings.redis_url)
    options.update(overrides)
    return Worker(**options)


__all__ = ["ArqRedis", "create_worker"]
