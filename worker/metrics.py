"""The worker's own figures, served on ``WORKER_METRICS_PORT`` (Prometheus text format)."""

from __future__ import annotations

import logging

from prometheus_client import Counter, Gauge, Histogram, start_http_server

log = logging.getLogger("worker.metrics")

PAGES = Counter("pcj_worker_pages_processed", "Pages extracted and stored")
# Against the pages of the jobs, how much work interruptions cost: a resumed job renders only the
# pages not stored yet, so across restarts this stays close to the pages stored.
RENDERED = Counter("pcj_worker_pages_rendered", "Pages rendered (one per page a render returned)")
JOBS_FINISHED = Counter("pcj_worker_jobs_finished", "Jobs this worker finished", ["outcome"])
JOB_SECONDS = Histogram(
    "pcj_worker_job_duration_seconds",
    "Claim to finish, per job",
    buckets=(0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800),
)
HEARTBEAT = Gauge("pcj_worker_last_heartbeat_timestamp_seconds", "When this worker last beat")
RUNNING = Gauge("pcj_worker_jobs_running", "Jobs this worker is running now")
# Outages as this worker lives through them (worker/dependency.py), and its sweeper's pulse.
DEPENDENCY_UP = Gauge(
    "pcj_worker_dependency_up",
    "1 while this worker reaches the dependency, 0 during an outage",
    ["dependency"],
)
OUTAGES = Counter("pcj_worker_dependency_outages", "Outages this worker saw begin", ["dependency"])
# Search indexing (worker/indexing/): passages embedded and written.
CHUNKS_INDEXED = Counter("pcj_worker_chunks_indexed", "Retrieval chunks embedded and stored")
LAST_SWEEP = Gauge("pcj_worker_last_sweep_timestamp_seconds", "When this worker last swept")


def serve(port: int) -> None:
    """Expose the metrics over HTTP from a background thread (0 disables).

    A taken port costs the metrics, not the worker: jobs matter more than their figures.
    """
    if not port:
        return
    try:
        start_http_server(port, addr="0.0.0.0")  # noqa: S104 - scraped from inside the network
    except OSError as exc:
        log.warning("worker metrics not served on port %d: %s", port, exc)
