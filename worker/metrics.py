"""The worker's own figures, served on ``WORKER_METRICS_HOST:WORKER_METRICS_PORT`` (Prometheus
text format).

Loopback by default: the figures name nobody, but they tell whoever reaches them how busy the
service is and when its dependencies fail, and a worker has no business answering the network
unasked. A container scraped from the network sets ``WORKER_METRICS_HOST=0.0.0.0``, and then
``METRICS_TOKEN`` is required (``service/settings.py`` refuses to start without it): every
request must carry ``Authorization: Bearer <METRICS_TOKEN>``, as on the API's ``/metrics``.
"""

from __future__ import annotations

import hmac
import json
import logging
import socket
import threading
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import Counter, Gauge, Histogram, make_wsgi_app

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


Environ = dict[str, Any]
StartResponse = Callable[..., Any]
WsgiApp = Callable[[Environ, StartResponse], Iterable[bytes]]


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True  # a scrape in progress never holds the worker's exit


class _Server6(_Server):
    address_family = socket.AF_INET6


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """No line per scrape on stderr."""


def _bearer(app: WsgiApp, token: str) -> WsgiApp:
    """``app`` for requests carrying ``Authorization: Bearer <token>``; a JSON 401 otherwise."""
    expected = f"Bearer {token}".encode()

    def guarded(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        sent = environ.get("HTTP_AUTHORIZATION", "").encode("latin-1", "replace")
        if hmac.compare_digest(sent, expected):
            return app(environ, start_response)
        body = json.dumps({"detail": "Metrics require Authorization: Bearer <METRICS_TOKEN>"})
        start_response(
            "401 Unauthorized",
            [
                ("Content-Type", "application/json"),
                ("WWW-Authenticate", 'Bearer realm="metrics"'),
                ("Cache-Control", "no-store"),
            ],
        )
        return [body.encode()]

    return guarded


def serve(port: int, host: str = "127.0.0.1", token: str | None = None) -> WSGIServer | None:
    """Expose the metrics over HTTP from a background thread on ``host:port`` (port 0: not at
    all), behind ``token`` when one is given; the server, or None.

    A taken port costs the metrics, not the worker: jobs matter more than their figures.
    """
    if not port:
        return None
    app: WsgiApp = make_wsgi_app()
    if token:
        app = _bearer(app, token)
    server_class = _Server6 if ":" in host else _Server  # ":": an IPv6 address
    try:
        server = make_server(host, port, app, server_class, handler_class=_Quiet)
    except OSError as exc:
        log.warning("worker metrics not served on %s:%d: %s", host, port, exc)
        return None
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    return server
