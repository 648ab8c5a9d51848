"""``GET /metrics`` in Prometheus format: HTTP traffic (Litestar's Prometheus middleware, by
route template and status) plus job gauges read from MongoDB and Redis at scrape time.

The worker exports its own figures (pages processed, job durations, heartbeats) on
``WORKER_METRICS_PORT``; see ``worker/metrics.py``.
"""

from __future__ import annotations

import asyncio
import logging

from litestar import Response, get
from litestar.plugins.prometheus import PrometheusConfig
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Gauge, generate_latest

from service.dependencies import ServicesDep
from service.models import JobStatus, PdfChapterJob
from service.state import Services

log = logging.getLogger("service.metrics")

PROMETHEUS = PrometheusConfig(
    app_name="pdf_chapter_jobs",
    prefix="pcj",
    group_path=True,  # /api/v1/books/jobs/{job_id}, not one series per job
    exclude=["/metrics", "/health"],
)

JOBS = Gauge("pcj_jobs", "Jobs in MongoDB by status", ["status"])
QUEUE_DEPTH = Gauge("pcj_queue_depth", "Entries waiting in the arq queue")
SCRAPE_ERRORS = Gauge(
    "pcj_metrics_scrape_errors",
    "1 when the last scrape could not read a dependency",
    ["dependency"],
)


async def refresh(services: Services) -> None:
    """Update the job gauges; a dependency that is down is reported, not raised."""
    collection = PdfChapterJob.get_pymongo_collection()
    try:
        counts = {status.value: 0 for status in JobStatus}
        pipeline = [{"$group": {"_id": "$status", "n": {"$sum": 1}}}]
        async for row in await collection.aggregate(pipeline, maxTimeMS=2000):
            counts[str(row["_id"])] = int(row["n"])
        for status, count in counts.items():
            JOBS.labels(status=status).set(count)
        SCRAPE_ERRORS.labels(dependency="mongodb").set(0)
    except Exception:
        log.warning("metrics: cannot count jobs", exc_info=True)
        SCRAPE_ERRORS.labels(dependency="mongodb").set(1)
    try:
        depth = await asyncio.wait_for(services.queue.zcard("arq:queue"), 2)
        QUEUE_DEPTH.set(depth)
        SCRAPE_ERRORS.labels(dependency="redis").set(0)
    except Exception:
        log.warning("metrics: cannot read the queue depth", exc_info=True)
        SCRAPE_ERRORS.labels(dependency="redis").set(1)


@get("/metrics", include_in_schema=False)
async def metrics(services: ServicesDep) -> Response[bytes]:
    """Prometheus text format. nginx exposes it to private addresses only."""
    await refresh(services)
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)
