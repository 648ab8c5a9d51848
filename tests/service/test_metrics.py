"""GET /metrics (API) and the worker's own counters."""

from __future__ import annotations

import asyncio

import pydantic
import pytest
from prometheus_client import REGISTRY
from pydantic import SecretStr

from service.domain.job import JobStatus
from service.settings import Settings
from tests.conftest import PRODUCTION_SECRETS
from tests.support.pdfs import text_pdf


async def test_metrics_count_jobs_by_status_and_queue_depth(client, job_factory, queue, submit):
    await job_factory(status=JobStatus.failed, error="x")
    await submit(text_pdf(1))  # pending, and one entry in the queue

    response = await client.get("/metrics")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert 'pcj_jobs{status="pending"} 1.0' in text
    assert 'pcj_jobs{status="failed"} 1.0' in text
    assert 'pcj_jobs{status="completed"} 0.0' in text
    assert "pcj_queue_depth 1.0" in text


async def test_metrics_count_http_requests_by_route_template(client, job_factory, auth_headers):
    job = await job_factory()
    labels = {"method": "GET", "path": "/api/v1/books/jobs/{job_id}"}
    before = REGISTRY.get_sample_value("pcj_requests_total", {**labels, "status": "200"}) or 0.0
    timed = REGISTRY.get_sample_value("pcj_request_duration_seconds_count", labels) or 0.0

    await client.get(f"/api/v1/books/jobs/{job.job_id}", headers=auth_headers("alice"))
    await client.get(f"/api/v1/books/jobs/{job.job_id}", headers=auth_headers("bob"))  # 403
    text = (await client.get("/metrics")).text

    assert (
        REGISTRY.get_sample_value("pcj_requests_total", {**labels, "status": "200"}) == before + 1
    )
    assert REGISTRY.get_sample_value("pcj_requests_total", {**labels, "status": "403"}) >= 1
    assert REGISTRY.get_sample_value("pcj_request_duration_seconds_count", labels) == timed + 2
    assert job.job_id not in text  # one series per route, never per job
    assert 'path="/metrics"' not in text


async def test_metrics_count_polls_and_the_queries_that_served_them(
    client, job_factory, auth_headers
):
    jobs = [await job_factory() for _ in range(6)]
    headers = auth_headers("alice")
    await client.get(f"/api/v1/books/jobs/{jobs[0].job_id}", headers=headers)  # token cached
    reads = REGISTRY.get_sample_value("pcj_job_reads_total") or 0.0
    queries = REGISTRY.get_sample_value("pcj_job_read_queries_total") or 0.0

    await asyncio.gather(
        *(client.get(f"/api/v1/books/jobs/{job.job_id}", headers=headers) for job in jobs)
    )
    text = (await client.get("/metrics")).text

    assert REGISTRY.get_sample_value("pcj_job_reads_total") == reads + 6
    assert queries + 1 <= REGISTRY.get_sample_value("pcj_job_read_queries_total") <= queries + 2
    assert "# TYPE pcj_job_reads_total counter" in text
    assert "# TYPE pcj_job_read_queries_total counter" in text


async def test_worker_counts_pages_and_jobs(submit, run_worker):
    before = REGISTRY.get_sample_value("pcj_worker_pages_processed_total") or 0.0
    finished = (
        REGISTRY.get_sample_value("pcj_worker_jobs_finished_total", {"outcome": "completed"}) or 0.0
    )
    await submit(text_pdf(4))

    await run_worker()

    assert REGISTRY.get_sample_value("pcj_worker_pages_processed_total") == before + 4
    assert (
        REGISTRY.get_sample_value("pcj_worker_jobs_finished_total", {"outcome": "completed"})
        == finished + 1
    )
    assert REGISTRY.get_sample_value("pcj_worker_last_heartbeat_timestamp_seconds") > 0


def test_http_metrics_histogram_buckets_are_cumulative_and_inclusive():
    from prometheus_client import CollectorRegistry

    from service.api.routes.metrics import HttpMetrics

    metrics, registry = HttpMetrics(), CollectorRegistry()
    registry.register(metrics)
    for seconds in (0.01, 0.02, 30.0):  # on a bound, between bounds, past the last bound
        metrics.observe("GET", "/x/{id}", 200, seconds)
    metrics.observe("GET", "/health", 200, 0.001)  # not recorded

    def bucket(le):
        labels = {"method": "GET", "path": "/x/{id}", "le": le}
        return registry.get_sample_value("pcj_request_duration_seconds_bucket", labels)

    assert [bucket("0.005"), bucket("0.01"), bucket("0.025"), bucket("10.0"), bucket("+Inf")] == [
        0, 1, 2, 2, 3,
    ]  # fmt: skip
    labels = {"method": "GET", "path": "/x/{id}"}
    assert registry.get_sample_value("pcj_request_duration_seconds_sum", labels) == 30.03
    assert registry.get_sample_value("pcj_requests_total", {**labels, "status": "200"}) == 3
    assert (
        registry.get_sample_value(
            "pcj_requests_total", {"method": "GET", "path": "/health", "status": "200"}
        )
        is None
    )


TOKEN = "metrics-token-0123456789"


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "Bearer wrong-token",
        f"Basic {TOKEN}",
        f"Bearer {TOKEN}x",
        "Bearer \u00e9t\u00e9".encode("latin-1"),
    ],
)
async def test_metrics_without_the_right_token_is_401_json(other_app, settings, authorization):
    guarded = settings.model_copy(update={"metrics_token": SecretStr(TOKEN)})
    headers = {"Authorization": authorization} if authorization else {}

    async with other_app(guarded) as client:
        response = await client.get("/metrics", headers=headers)

    assert response.status_code == 401
    assert response.json() == {"detail": "Metrics require Authorization: Bearer <METRICS_TOKEN>"}
    assert response.headers["www-authenticate"] == 'Bearer realm="metrics"'
    assert "pcj_jobs" not in response.text


async def test_metrics_with_the_token_are_served(other_app, settings):
    guarded = settings.model_copy(update={"metrics_token": SecretStr(TOKEN)})

    async with other_app(guarded) as client:
        response = await client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})

    assert response.status_code == 200
    assert "pcj_jobs" in response.text


def test_production_refuses_to_start_without_a_metrics_token():
    production = {
        "app_env": "production",
        "firebase_project_id": "real-project",
        "page_url_secret": PRODUCTION_SECRETS["page_url_secret"],
        "stream_token_secret": PRODUCTION_SECRETS["stream_token_secret"],
    }

    with pytest.raises(pydantic.ValidationError, match="METRICS_TOKEN"):
        Settings(**production)
    with pytest.raises(pydantic.ValidationError, match="16 characters"):
        Settings(**production, metrics_token="short")

    assert Settings(**production, metrics_token=TOKEN).metrics_token.get_secret_value() == TOKEN


async def test_metrics_count_open_event_streams_and_what_the_feed_did(app, client, job_factory):
    job = await job_factory()
    feed = app.state.services.feed

    before = (await client.get("/metrics")).text
    subscription = feed.subscribe(job.job_id, "alice")
    try:
        during = (await client.get("/metrics")).text
    finally:
        subscription.close()
    after = (await client.get("/metrics")).text

    assert "pcj_event_streams 0.0" in before
    assert "pcj_event_streams 1.0" in during
    assert "pcj_event_streams 0.0" in after
    for series in ("changes", "events", "dropped_streams", "resyncs"):
        assert f"pcj_feed_{series}_total " in during
