"""``GET /metrics`` in Prometheus format: HTTP traffic by route template and status, plus job
gauges read from MongoDB and Redis at scrape time.

HTTP traffic is recorded by the request-id middleware, which already wraps every request, through
``observe_request``. Litestar's ``PrometheusMiddleware`` did this first, but it builds a Request,
two label dicts and an in-progress gauge per request: 12% of the polling endpoint's CPU
(613 vs 540 us per request under wrk); recording here is a few dict updates.

The worker exports its own figures (pages processed, job durations, heartbeats) on
``WORKER_METRICS_PORT``; see ``worker/metrics.py``.
"""

from __future__ import annotations

import asyncio
import logging
from bisect import bisect_left
from collections.abc import Iterator
from itertools import accumulate

from litestar import Response, get
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Gauge, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from service.api.http.dependencies import ServicesDep
from service.api.http.metrics_token import require_metrics_token
from service.api.services import Services
from service.domain.job import utcnow
from service.store.feed import JobFeed
from service.store.reader import ReadCounts

log = logging.getLogger("service.metrics")

# Upper bounds of the request duration histogram's buckets, in seconds.
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
UNRECORDED = frozenset({"/metrics", "/health"})


class HttpMetrics:
    """Per-route request counts and durations, exported when Prometheus scrapes.

    ``pcj_requests_total{method,path,status}`` and ``pcj_request_duration_seconds{method,path}``.
    The figures live in plain dicts written by the one event loop of the process, so recording a
    request is a few dict and list updates with no locks (prometheus_client's own Counter and
    Histogram take a lock per update, and the histogram walks its buckets); ``collect`` turns
    them into metric families at scrape time.
    """

    def __init__(self) -> None:
        self.counts: dict[tuple[str, str, int], int] = {}
        # Per (method, path): requests per bucket (the last one is +Inf), then the sum of seconds.
        self.durations: dict[tuple[str, str], list[float]] = {}

    def observe(self, method: str, path: str, status: int, seconds: float) -> None:
        """Count one request under its route template (``/api/v1/books/jobs/{job_id}``: one
        series per route, never one per job)."""
        if path in UNRECORDED:
            return
        key = (method, path, status)
        self.counts[key] = self.counts.get(key, 0) + 1
        series = self.durations.get((method, path))
        if series is None:
            series = self.durations[(method, path)] = [0.0] * (len(BUCKETS) + 2)
        series[bisect_left(BUCKETS, seconds)] += 1  # the first bucket whose bound >= seconds
        series[-1] += seconds

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            "pcj_requests",
            "HTTP requests by method, route template and status",
            labels=["method", "path", "status"],
        )
        for (method, path, status), count in self.counts.items():
            requests.add_metric([method, path, str(status)], count)
        yield requests
        durations = HistogramMetricFamily(
            "pcj_request_duration_seconds",
            "HTTP request duration by method and route template",
            labels=["method", "path"],
        )
        bounds = [*(str(bound) for bound in BUCKETS), "+Inf"]
        for (method, path), series in self.durations.items():
            cumulative = list(accumulate(series[:-1]))
            durations.add_metric(
                [method, path],
                buckets=list(zip(bounds, cumulative, strict=True)),
                sum_value=series[-1],
            )
        yield durations


HTTP = HttpMetrics()
REGISTRY.register(HTTP)
observe_request = HTTP.observe


class JobReadMetrics:
    """``pcj_job_reads_total`` polls read and ``pcj_job_read_queries_total`` MongoDB queries
    that served them (service/store/reader.py): their ratio is the mean number of polls per
    query."""

    def __init__(self, counts: ReadCounts) -> None:
        self.counts = counts

    def collect(self) -> Iterator[Metric]:
        yield CounterMetricFamily(
            "pcj_job_reads", "Job reads by the polled job endpoints", value=self.counts.reads
        )
        yield CounterMetricFamily(
            "pcj_job_read_queries",
            "MongoDB queries that served the polled job endpoints' reads",
            value=self.counts.queries,
        )


JOB_READS = ReadCounts()
REGISTRY.register(JobReadMetrics(JOB_READS))


class FeedMetrics:
    """The event streams of this process (service/store/feed/): how many are open, what the
    change feed read and fanned out, the streams dropped for not reading, the resyncs."""

    def __init__(self) -> None:
        self.feed: JobFeed | None = None  # this process's, set at each scrape

    def collect(self) -> Iterator[Metric]:
        feed = self.feed
        if feed is None:
            return
        counts = feed.counts
        yield GaugeMetricFamily(
            "pcj_event_streams", "Event streams open in this process", value=feed.subscriptions
        )
        yield CounterMetricFamily(
            "pcj_feed_changes", "Job and page changes the feed read", value=counts.changes
        )
        yield CounterMetricFamily(
            "pcj_feed_events", "Events offered to open streams", value=counts.events
        )
        yield CounterMetricFamily(
            "pcj_feed_dropped_streams",
            "Streams dropped for falling STREAM_QUEUE_LIMIT events behind",
            value=counts.dropped,
        )
        yield CounterMetricFamily(
            "pcj_feed_resyncs",
            "Re-reads of every subscribed job after a break",
            value=counts.resyncs,
        )


FEED = FeedMetrics()
REGISTRY.register(FEED)


JOBS = Gauge("pcj_jobs", "Jobs in MongoDB by status", ["status"])
QUEUE_DEPTH = Gauge("pcj_queue_depth", "Entries waiting in the arq queue")
CHAPTERS_INDEX = Gauge("pcj_chapters_index", "Chapters by search index status", ["status"])
INDEX_LAG = Gauge(
    "pcj_index_lag_seconds",
    "How long the longest-waiting chapter has waited to be indexed (0: none waits)",
)
SCRAPE_ERRORS = Gauge(
    "pcj_metrics_scrape_errors",
    "1 when the last scrape could not read a dependency",
    ["dependency"],
)


async def refresh(services: Services) -> None:
    """Update the job gauges; a dependency that is down is reported, not raised."""
    try:
        counts = await services.store.jobs.count_by_status()
        for status, count in counts.items():
            JOBS.labels(status=status).set(count)
        for status, count in (await services.store.chapters.index_counts()).items():
            CHAPTERS_INDEX.labels(status=status).set(count)
        oldest = await services.store.chapters.oldest_pending_index()
        INDEX_LAG.set(0 if oldest is None else max(0.0, (utcnow() - oldest).total_seconds()))
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


@get("/metrics", include_in_schema=False, guards=[require_metrics_token])
async def metrics(services: ServicesDep) -> Response[bytes]:
    """Prometheus text format; ``Authorization: Bearer <METRICS_TOKEN>`` when that is set."""
    await refresh(services)
    FEED.feed = services.feed
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)
