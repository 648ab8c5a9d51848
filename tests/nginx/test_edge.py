"""The real nginx (Debian package) in front of the real API: CORS and JSON on its own errors."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import uuid
from pathlib import Path

import httpx
import pytest

from devstack.embedded import free_port
from devstack.nginx import render
from devstack.token import emulator_token
from service.api.http.image_urls import page_image_url
from service.domain.page_keys import page_key
from tests.conftest import PROJECT_ID
from tests.support.pdfs import text_pdf
from tests.support.server import granian_api, wait_port

NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
pytestmark = pytest.mark.skipif(
    NGINX is None, reason="nginx is not installed (apt-get install nginx; .ci/run installs it)"
)

ALLOWED = "https://wordai.pro"
ORIGINS = [ALLOWED, r"~^https://[a-z0-9-]+\.wordai\.pro$"]
MAX_UPLOAD_MB = 60
METRICS_TOKEN = "edge-metrics-token-0123456789"


@pytest.fixture(scope="module")
def api(settings, tmp_path_factory):
    """The API under granian, in emulator mode (development tokens), logging every request."""
    log = tmp_path_factory.mktemp("api") / "api.log"
    env = {
        "CORS_ORIGINS": ALLOWED,
        "MAX_UPLOAD_MB": str(MAX_UPLOAD_MB),
        "ACCESS_LOG": "true",
        "METRICS_TOKEN": METRICS_TOKEN,
    }
    with granian_api(settings, PROJECT_ID, log, **env) as port:
        yield port, log


def _start_nginx(directory: Path, upstream_port: int) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    conf = render(
        directory,
        upstreams=[f"127.0.0.1:{upstream_port}"],
        listen=f"127.0.0.1:{port}",
        origins=ORIGINS,
        max_upload_mb=MAX_UPLOAD_MB,
    )
    process = subprocess.Popen(
        [NGINX, "-p", str(directory), "-c", str(conf), "-g", "daemon off;"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,  # errors: DIR/logs/error.log
    )  # fmt: skip
    wait_port(port, process, "nginx")
    return process, port


@pytest.fixture(scope="module")
def edge(api, tmp_path_factory):
    """nginx in front of the running API."""
    directory = tmp_path_factory.mktemp("nginx-up")
    process, port = _start_nginx(directory, api[0])
    yield f"http://127.0.0.1:{port}", directory
    process.send_signal(signal.SIGQUIT)
    process.wait(10)


@pytest.fixture(scope="module")
def edge_down(tmp_path_factory):
    """nginx in front of an API that is not running."""
    directory = tmp_path_factory.mktemp("nginx-down")
    process, port = _start_nginx(directory, free_port())
    yield f"http://127.0.0.1:{port}"
    process.send_signal(signal.SIGQUIT)
    process.wait(10)


def _headers(user_id: str = "alice", origin: str | None = ALLOWED) -> dict[str, str]:
    headers = {"Authorization": f"Bearer {emulator_token(user_id, PROJECT_ID)}"}
    if origin:
        headers["Origin"] = origin
    return headers


def test_shipped_config_passes_nginx_t(tmp_path):
    conf = render(
        tmp_path, upstreams=["127.0.0.1:8000"], listen="127.0.0.1:8080",
        origins=ORIGINS, max_upload_mb=100,
    )  # fmt: skip

    result = subprocess.run(
        [NGINX, "-t", "-p", str(tmp_path), "-c", str(conf)],
        capture_output=True,
        text=True,
        timeout=30,
    )

    assert result.returncode == 0, result.stderr
    assert "test is successful" in result.stderr


async def test_upstream_down_is_json_502_with_cors_for_an_allowed_origin(edge_down):
    async with httpx.AsyncClient(base_url=edge_down) as client:
        response = await client.get(
            "/api/v1/books/jobs/db67a850-1efd-41f7-88ed-b434ef108bc5", headers=_headers()
        )

    assert response.status_code == 502
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"detail": "Bad gateway: the API is not answering, retry later"}
    assert response.headers.get_list("access-control-allow-origin") == [ALLOWED]
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["retry-after"] == "5"
    assert response.headers["x-request-id"]


async def test_upstream_down_gives_no_cors_to_a_foreign_origin(edge_down):
    async with httpx.AsyncClient(base_url=edge_down) as client:
        response = await client.get(
            "/api/v1/books/jobs/x", headers=_headers(origin="https://evil.test")
        )

    assert response.status_code == 502
    assert response.json()["detail"].startswith("Bad gateway")
    assert "access-control-allow-origin" not in response.headers
    assert "access-control-allow-credentials" not in response.headers


async def test_pattern_origin_is_allowed(edge_down):
    async with httpx.AsyncClient(base_url=edge_down) as client:
        response = await client.get(
            "/api/v1/books/jobs/x", headers=_headers(origin="https://app.wordai.pro")
        )

    assert response.headers.get_list("access-control-allow-origin") == ["https://app.wordai.pro"]


async def test_preflight_is_answered_by_nginx_while_the_app_is_down(edge_down):
    headers = {
        "Origin": ALLOWED,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type",
    }
    async with httpx.AsyncClient(base_url=edge_down) as client:
        response = await client.options("/api/v1/books/jobs", headers=headers)

    assert response.status_code == 204
    assert response.headers["access-control-allow-origin"] == ALLOWED
    assert "POST" in response.headers["access-control-allow-methods"]
    assert "Authorization" in response.headers["access-control-allow-headers"]
    assert response.headers["access-control-max-age"] == "600"


async def test_upstream_up_answers_with_exactly_one_allow_origin(edge, job_factory):
    job = await job_factory(user_id="alice")
    async with httpx.AsyncClient(base_url=edge[0]) as client:
        response = await client.get(f"/api/v1/books/jobs/{job.job_id}", headers=_headers())

    assert response.status_code == 200
    assert response.json()["job_id"] == job.job_id
    assert response.headers.get_list("access-control-allow-origin") == [ALLOWED]
    assert "ETag" in response.headers["access-control-expose-headers"]
    assert "server" not in response.headers or "nginx/" not in response.headers["server"]


async def test_app_errors_pass_through_with_cors(edge):
    async with httpx.AsyncClient(base_url=edge[0]) as client:
        response = await client.get("/api/v1/books/jobs/db67a850-1efd-41f7-88ed-b434ef108bc5")

    assert response.status_code == 401
    assert response.json() == {"detail": "Could not validate credentials"}


async def test_50_mb_pdf_uploads_through_nginx(edge):
    pdf = text_pdf(5) + b"\n%" + b"0" * (50 * 1024 * 1024)  # readers ignore bytes after %%EOF
    async with httpx.AsyncClient(base_url=edge[0], timeout=120) as client:
        response = await client.post(
            "/api/v1/files", files={"file": ("big.pdf", pdf, "application/pdf")}, headers=_headers()
        )
        # This API shares the session's database, which only tests of the in-process app clean:
        # the next of those to count uploads would find this one.
        if response.status_code == 201:
            await client.delete(f"/api/v1/files/{response.json()['file_id']}", headers=_headers())

    assert response.status_code == 201, response.text
    assert response.json()["size_bytes"] == len(pdf)


def test_upload_over_the_limit_is_json_413_with_cors(edge):
    host, port = edge[0].removeprefix("http://").split(":")
    too_big = (MAX_UPLOAD_MB + 2) * 1024 * 1024
    request = (
        f"POST /api/v1/files HTTP/1.1\r\nHost: {host}\r\nOrigin: {ALLOWED}\r\n"
        f"Content-Type: multipart/form-data; boundary=x\r\nContent-Length: {too_big}\r\n"
        "Connection: close\r\n\r\n"
    ).encode()
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(request)
        raw = b""
        while chunk := sock.recv(65536):
            raw += chunk
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}

    assert lines[0].startswith("HTTP/1.1 413")
    assert json.loads(body) == {"detail": f"File exceeds the {MAX_UPLOAD_MB} MB upload limit"}
    assert headers["access-control-allow-origin"] == ALLOWED


async def test_request_id_reaches_the_app_log(edge, api):
    async with httpx.AsyncClient(base_url=edge[0]) as client:
        given = await client.get("/health", headers={"X-Request-ID": "edge-test-4711"})
        made = await client.get("/health")

    assert given.headers["x-request-id"] == "edge-test-4711"
    generated = made.headers["x-request-id"]

    def logged_ids() -> set[str]:
        text = api[1].read_text()
        lines = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
        return {line.get("request_id") for line in lines if line.get("message") == "request"}

    await _until(lambda: {"edge-test-4711", generated} <= logged_ids(), "the API log lines")
    assert {"edge-test-4711", generated} <= logged_ids()


async def test_access_log_is_json_without_the_token(edge):
    token_headers = _headers()
    async with httpx.AsyncClient(base_url=edge[0]) as client:
        await client.get(
            "/api/v1/books/jobs/db67a850-1efd-41f7-88ed-b434ef108bc5", headers=token_headers
        )
    access_log = edge[1] / "logs" / "access.log"
    await _until(lambda: "db67a850" in access_log.read_text(), "the access log line")

    log = access_log.read_text()
    token = token_headers["Authorization"].split()[1]
    entries = [json.loads(line) for line in log.splitlines()]  # every line is JSON
    paths = [entry["path"] for entry in entries]
    assert "/api/v1/books/jobs/db67a850-1efd-41f7-88ed-b434ef108bc5" in paths
    assert token not in log
    assert "Bearer" not in log


async def test_metrics_pass_through_and_the_app_asks_for_the_token(edge):
    base, _ = edge
    async with httpx.AsyncClient(base_url=base) as client:
        anonymous = await client.get("/metrics")
        wrong = await client.get("/metrics", headers={"Authorization": "Bearer nope"})
        scraper = await client.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})

    # From 127.0.0.1, which nginx used to trust: the address no longer opens it.
    assert (anonymous.status_code, wrong.status_code) == (401, 401)
    assert anonymous.json() == {"detail": "Metrics require Authorization: Bearer <METRICS_TOKEN>"}
    assert scraper.status_code == 200
    assert "pcj_jobs" in scraper.text


def test_metrics_location_trusts_no_source_address():
    template = (Path(__file__).resolve().parents[2] / "nginx" / "nginx.conf.template").read_text()
    block = template.split("location = /metrics {", 1)[1].split("}", 1)[0]

    assert "allow" not in block
    assert "deny" not in block
    assert "proxy_pass http://api;" in block


@pytest.mark.parametrize(
    ("path", "media_type"),
    [
        ("/", "text/html"),
        ("/web/app.js", "text/javascript"),
        ("/config.json", "application/json"),
        ("/books/book_1/chapters/527a857d", "text/html"),
        ("/schema/openapi.json", "application/"),
        ("/schema/swagger", "text/html"),
    ],
)
async def test_the_page_is_served_through_nginx_with_its_policy(edge, path, media_type):
    async with httpx.AsyncClient(base_url=edge[0]) as client:
        response = await client.get(path)

    assert response.status_code == 200
    assert response.headers["content-type"].startswith(media_type)
    assert response.headers["x-frame-options"] == "DENY"
    if path in ("/", "/books/book_1/chapters/527a857d"):
        assert "script-src 'self'" in response.headers["content-security-policy"]


async def test_paths_beside_the_page_stay_nginx_json_404s(edge):
    async with httpx.AsyncClient(base_url=edge[0]) as client:
        response = await client.get("/web/../service/settings.py")
        other = await client.get("/index.html")

    assert (response.status_code, other.status_code) == (404, 404)
    assert other.json() == {"detail": "Not Found"}


async def test_page_images_pass_through_with_their_caching_headers_and_a_304(edge, app):
    services = app.state.services
    key = page_key(str(uuid.uuid4()), 1)
    data = os.urandom(200_000)
    await services.store.images.put(key, data, "image/webp", owner="alice")
    base, _ = edge
    url = await page_image_url(services, key, origin=base)  # no Authorization: the URL is it

    async with httpx.AsyncClient() as browser:
        first = await browser.get(url, headers={"Origin": ALLOWED})
        again = await browser.get(url, headers={"If-None-Match": first.headers["etag"]})
        tampered = await browser.get(url.replace("sig=", "sig=0"))

    assert first.status_code == 200
    assert first.content == data
    assert first.headers["content-type"] == "image/webp"
    assert first.headers["content-length"] == str(len(data))
    assert first.headers["cache-control"].startswith("private, max-age=")
    assert first.headers.get_list("access-control-allow-origin") == [ALLOWED]
    assert again.status_code == 304
    assert again.content == b""
    assert again.headers["etag"] == first.headers["etag"]
    assert tampered.status_code == 403
    assert tampered.json() == {"detail": "Image URL signature is invalid"}


def test_page_images_have_their_own_location_without_long_timeouts(tmp_path):
    conf = render(
        tmp_path, upstreams=["127.0.0.1:8000"], listen="127.0.0.1:8080",
        origins=ORIGINS, max_upload_mb=100,
    )  # fmt: skip
    text = conf.read_text()

    block = text[text.index("location /api/v1/page-images/ {") :]
    block = block[: block.index("\n        }\n")]

    assert "proxy_read_timeout 10s;" in block
    assert "120s" not in block
    assert "proxy_hide_header" not in block  # ETag and Cache-Control reach the browser


async def _until(condition, what: str) -> None:
    """Wait for a log line: a process writes it on its own schedule."""
    for _ in range(200):
        if condition():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{what} never appeared")


def _raw(base_url: str, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send ``request`` byte for byte (no client library would send these) and read the answer."""
    port = int(base_url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {name.lower(): value.strip() for name, _, value in (h.partition(":") for h in lines)}
    return int(status_line.split()[1]), headers, body


def _get(target: bytes, *headers: bytes) -> bytes:
    extra = b"".join(header + b"\r\n" for header in headers)
    return b"GET " + target + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" + extra + b"\r\n"


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        pytest.param(_get(b"/api/v1/books/jobs/\xff"), 400, id="path-not-utf8"),
        pytest.param(_get(b"/api/v1/books/jobs?status=\xc3"), 400, id="query-cut-utf8"),
        pytest.param(_get(b"/api/v1/books/jobs?status=\xed\xa0\x80"), 400, id="query-surrogate"),
        pytest.param(b"GARBAGE\r\n\r\n", 400, id="request-line"),
        pytest.param(_get(b"/api/v1/a%ZZ"), 400, id="bad-percent"),
        pytest.param(_get(b"/api/v1/books/jobs", b"Bad Header: y"), 400, id="header"),
        pytest.param(_get(b"/api/" + b"a" * 20_000), 414, id="uri-too-long"),
        pytest.param(_get(b"/api/v1/x", b"X-Big: " + b"a" * 20_000), 431, id="header-too-large"),
        pytest.param(b"GET /api/v1/x HTTP/9.9\r\nHost: x\r\n\r\n", 505, id="version"),
    ],
)
def test_malformed_requests_get_json_from_the_edge_never_an_empty_or_html_page(
    edge, request_bytes, status
):
    code, headers, body = _raw(edge[0], request_bytes)

    assert code == status
    assert headers["content-type"] == "application/json"
    assert headers["cache-control"] == "no-store"
    assert json.loads(body)["detail"]


def test_a_utf8_request_target_still_reaches_the_app(edge):
    code, _, body = _raw(
        edge[0], _get("/api/v1/books/jobs/書".encode(), b"Authorization: Bearer x")
    )

    assert code == 401  # the app's own answer: it saw the request
    assert json.loads(body) == {"detail": "Could not validate credentials"}


async def test_the_apps_own_400_passes_through_unchanged(edge):
    async with httpx.AsyncClient(base_url=edge[0]) as client:
        response = await client.get("/api/v1/books/jobs?limit=0", headers=_headers())

    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == "limit"
