"""The job event stream through the real nginx: unbuffered, with CORS, its token kept out of
nginx's logs, and nginx's JSON 502 when the API is down."""

from __future__ import annotations

import re
import signal

import httpx
import pytest

from devstack.embedded import free_port
from devstack.nginx import SOURCE
from devstack.token import emulator_token
from service.domain import lifecycle
from service.domain.job import JobStatus, utcnow
from service.settings import Settings
from tests.conftest import PROJECT_ID
from tests.nginx.test_edge import ALLOWED, NGINX, _start_nginx
from tests.support.server import granian_api
from tests.support.sse import WAIT_S, EventReader

pytestmark = pytest.mark.skipif(
    NGINX is None, reason="nginx is not installed (apt-get install nginx; .ci/run installs it)"
)

LEASE = "lease-1"
EVENTS = "/api/v1/books/jobs/{}/events"


@pytest.fixture(scope="module")
def stream_edge(settings, tmp_path_factory):
    """nginx in front of the API; yields (nginx URL, nginx directory)."""
    log = tmp_path_factory.mktemp("stream-api") / "api.log"
    with granian_api(settings, PROJECT_ID, log, CORS_ORIGINS=ALLOWED) as api_port:
        directory = tmp_path_factory.mktemp("stream-nginx")
        process, port = _start_nginx(directory, api_port)
        yield f"http://127.0.0.1:{port}", directory
        process.send_signal(signal.SIGQUIT)
        process.wait(10)


@pytest.fixture(scope="module")
def stream_edge_down(tmp_path_factory):
    """nginx in front of an API that is not running; yields (nginx URL, nginx directory)."""
    directory = tmp_path_factory.mktemp("stream-nginx-down")
    process, port = _start_nginx(directory, free_port())
    yield f"http://127.0.0.1:{port}", directory
    process.send_signal(signal.SIGQUIT)
    process.wait(10)


def _headers(user_id="alice"):
    return {
        "Authorization": f"Bearer {emulator_token(user_id, PROJECT_ID)}",
        "Origin": ALLOWED,
    }


async def _running(job_factory):
    return await job_factory(
        status=JobStatus.processing, lease_id=LEASE, heartbeat_at=utcnow(), progress=30
    )


async def test_events_pass_through_nginx_as_they_are_written_with_cors(
    apply, stream_edge, job_factory
):
    job = await _running(job_factory)

    async with (
        httpx.AsyncClient(base_url=stream_edge[0], timeout=WAIT_S) as client,
        client.stream("GET", EVENTS.format(job.job_id), headers=_headers()) as response,
    ):
        reader = EventReader(response)
        first = await reader.next()
        await apply(lifecycle.advance(job.job_id, LEASE, 45, "Processed 1/2 pages...", utcnow()))
        # A buffering proxy would hold this small event back: the read would time out.
        change = await reader.next()

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers.get_list("access-control-allow-origin") == [ALLOWED]
    assert first.json()["progress"] == 30
    assert change.json()["progress"] == 45


async def test_the_stream_token_stays_out_of_nginx_logs(stream_edge, stream_edge_down, job_factory):
    job = await _running(job_factory)
    async with httpx.AsyncClient(base_url=stream_edge[0], timeout=WAIT_S) as client:
        minted = await client.post(
            f"/api/v1/books/jobs/{job.job_id}/stream-token", headers=_headers()
        )
        token = minted.json()["token"]
        async with client.stream(
            "GET", EVENTS.format(job.job_id), params={"token": token}, headers={"Origin": ALLOWED}
        ) as response:
            assert (await EventReader(response).next()).json()["job_id"] == job.job_id
    async with httpx.AsyncClient(base_url=stream_edge_down[0], timeout=WAIT_S) as client:
        down = await client.get(EVENTS.format(job.job_id), params={"token": token})

    assert minted.status_code == 200
    assert down.status_code == 502  # an upstream error: what nginx would log with the request
    for directory in (stream_edge[1], stream_edge_down[1]):
        for name in ("access.log", "error.log"):
            log = (directory / "logs" / name).read_text()
            assert token not in log, f"{name} holds the token"
            assert "token=" not in log, f"{name} holds the query string"
    access = (stream_edge[1] / "logs" / "access.log").read_text()
    assert f"/api/v1/books/jobs/{job.job_id}/events" in access


async def test_with_the_api_down_the_stream_is_nginx_json_502_with_cors(stream_edge_down):
    async with httpx.AsyncClient(base_url=stream_edge_down[0], timeout=WAIT_S) as client:
        response = await client.get(
            EVENTS.format("db67a850-1efd-41f7-88ed-b434ef108bc5"), headers=_headers()
        )

    assert response.status_code == 502
    assert response.json() == {"detail": "Bad gateway: the API is not answering, retry later"}
    assert response.headers.get_list("access-control-allow-origin") == [ALLOWED]
    assert response.headers["retry-after"] == "5"


async def test_preflight_allows_last_event_id(stream_edge_down):
    headers = {
        "Origin": ALLOWED,
        "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "authorization, last-event-id",
    }
    async with httpx.AsyncClient(base_url=stream_edge_down[0]) as client:
        response = await client.options(EVENTS.format("x"), headers=headers)

    assert response.status_code == 204
    assert "Last-Event-ID" in response.headers["access-control-allow-headers"]


def test_the_stream_read_timeout_outlasts_three_heartbeats():
    template = (SOURCE / "nginx.conf.template").read_text()
    location = re.search(r"location ~ \^/api/v1/books/jobs/\[\^/\]\+/events\$ \{(.*?)\n        \}",
                         template, re.S)  # fmt: skip
    assert location is not None
    timeout_s = int(re.search(r"proxy_read_timeout (\d+)s;", location.group(1)).group(1))
    assert "proxy_buffering off;" in location.group(1)
    longest_heartbeat = next(
        meta.le
        for meta in Settings.model_fields["stream_heartbeat_s"].metadata
        if hasattr(meta, "le")
    )
    assert timeout_s > 3 * longest_heartbeat
