"""The worker's metrics listen on loopback unless told otherwise, and then only behind the
metrics token."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest
from pydantic import ValidationError

from devstack.embedded import free_port
from service.settings import Settings
from tests.conftest import REPO_ROOT
from worker.metrics import serve

TOKEN = "t" * 24


@contextmanager
def metrics_server(port: int, host: str = "127.0.0.1", token: str | None = None) -> Iterator[None]:
    server = serve(port, host, token)
    try:
        yield
    finally:
        if server is not None:
            server.shutdown()
            server.server_close()


def listening_addresses(port: int) -> set[str]:
    """The local IPv4 addresses a socket listens on at ``port`` (from /proc/net/tcp)."""
    found = set()
    with open("/proc/net/tcp") as table:
        for line in list(table)[1:]:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.split(":")
            if state == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
                found.add(".".join(str(int(address[i : i + 2], 16)) for i in (6, 4, 2, 0)))
    return found


def test_the_worker_process_serves_its_metrics_on_loopback_by_default(settings):
    port = free_port()
    worker = subprocess.Popen(
        [sys.executable, "-m", "worker"],
        cwd=REPO_ROOT,
        env={
            **os.environ,
            "MONGODB_URL": settings.mongodb_url,
            "MONGODB_DB": settings.mongodb_db,
            "REDIS_URL": settings.redis_url,
            "RENDER_PROCESSES": "1",
            "WORKER_METRICS_PORT": str(port),
        },
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while not (addresses := listening_addresses(port)) and time.monotonic() < deadline:
            time.sleep(0.05)
        scraped = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
    finally:
        worker.terminate()
        worker.wait(30)

    assert addresses == {"127.0.0.1"}
    assert scraped.status_code == 200
    assert "pcj_worker_jobs_running" in scraped.text


def test_worker_metrics_off_loopback_answer_only_the_token():
    port = free_port()

    with metrics_server(port, "0.0.0.0", TOKEN):
        anonymous = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
        wrong = httpx.get(
            f"http://127.0.0.1:{port}/metrics", headers={"Authorization": "Bearer x"}, timeout=5
        )
        right = httpx.get(
            f"http://127.0.0.1:{port}/metrics",
            headers={"Authorization": f"Bearer {TOKEN}"},
            timeout=5,
        )

    assert anonymous.status_code == wrong.status_code == 401
    assert anonymous.json() == {"detail": "Metrics require Authorization: Bearer <METRICS_TOKEN>"}
    assert anonymous.headers["www-authenticate"] == 'Bearer realm="metrics"'
    assert right.status_code == 200
    assert "pcj_worker_jobs_running" in right.text


@pytest.mark.parametrize("host", ["0.0.0.0", "10.1.2.3", "worker.internal", "::"])
def test_worker_metrics_off_loopback_without_a_token_refuse_to_start(host):
    with pytest.raises(ValidationError, match="set METRICS_TOKEN too"):
        Settings(worker_metrics_host=host, metrics_token=None)


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "localhost"])
def test_worker_metrics_on_loopback_need_no_token(host):
    assert Settings(worker_metrics_host=host, metrics_token=None).worker_metrics_host == host


def test_worker_metrics_off_loopback_start_with_a_token_or_when_off():
    assert Settings(worker_metrics_host="0.0.0.0", metrics_token=TOKEN).metrics_token
    assert Settings(worker_metrics_host="0.0.0.0", worker_metrics_port=0)
