"""``make run`` supervises: a crashed worker or API is restarted with a log line while the other
keeps serving, a worker restarted after a SIGKILL resumes the job it was running at once, and
Ctrl-C still stops everything it started. Real processes throughout."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pymongo
import pytest

from devstack.embedded import free_port
from devstack.token import emulator_token
from service.settings import Settings
from tests.support.pdfs import slow_last_page_pdf

PAGES = 800  # light text pages, then a slow one: the job is still running when the worker dies


def _children(pid: int) -> dict[int, str]:
    """pid -> command line of each live child of ``pid``."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[1]) == pid and fields[0] != "Z":
            found[int(entry.name)] = cmdline
    return found


def _child(pid: int, needle: str) -> int | None:
    return next((p for p, cmd in _children(pid).items() if needle in cmd), None)


def _wait(predicate, seconds=60.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    return None


def _health(port: int) -> int | None:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code
    except httpx.TransportError:
        return None


@pytest.fixture
def make_run(mongod, redis_server, tmp_path):
    """``python -m devstack run`` on the session's servers, in a directory of its own."""
    port = free_port()
    env = {
        **os.environ,
        "MONGODB_URL": mongod.url,
        "MONGODB_DB": "pcj_make_run",
        "REDIS_URL": redis_server.url.replace("/0", "/3"),
        "PORT": str(port),
        "WORKER_METRICS_PORT": "0",
        # Neither the job's heartbeat nor the worker's record goes stale within the test: only
        # the restarted worker itself can hand the job back.
        "STALE_AFTER_S": "600",
        "WORKER_STALE_S": "600",
        "JOB_MEMORY_LIMIT_MB": "4096",
    }
    log = open(tmp_path / "run.log", "wb")  # noqa: SIM115
    process = subprocess.Popen(
        [sys.executable, "-m", "devstack", "run"],
        cwd=tmp_path,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        yield process, port, tmp_path / "run.log"
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(30)
        log.close()
        with pymongo.MongoClient(mongod.url) as client:
            client.drop_database("pcj_make_run")


def _submit(port: int) -> str:
    """Upload a PDF and create its job through the API, as a browser would; the job id."""
    headers = {"Authorization": f"Bearer {emulator_token('alice', Settings().firebase_project_id)}"}
    base = f"http://127.0.0.1:{port}"
    pdf = slow_last_page_pdf(PAGES)
    uploaded = httpx.post(
        f"{base}/api/v1/files", files={"file": ("a.pdf", pdf)}, headers=headers, timeout=30
    )
    created = httpx.post(
        f"{base}/api/v1/books/jobs",
        json={"book_id": "b", "file_id": uploaded.json()["file_id"], "content_mode": "pdf_file"},
        headers=headers,
        timeout=30,
    )
    return str(created.json()["job_id"])


def test_make_run_restarts_a_killed_worker_which_resumes_its_job_and_stops_on_ctrl_c(
    make_run, mongod
):
    process, port, log = make_run
    assert _wait(lambda: _health(port) == 200), log.read_text()
    worker = _wait(lambda: _child(process.pid, "-m worker"))
    api = _child(process.pid, "granian")
    api_workers = set(_children(api))  # granian's own worker processes
    with pymongo.MongoClient(mongod.url) as client:
        jobs = client["pcj_make_run"]["pdf_chapter_jobs"]
        job_id = _submit(port)
        assert _wait(lambda: (jobs.find_one({"job_id": job_id}) or {}).get("progress", 0) > 30)
        os.kill(worker, signal.SIGSTOP)  # it writes nothing more: the job read now stays so
        running = jobs.find_one({"job_id": job_id})

        os.kill(worker, signal.SIGKILL)
        new_worker = _wait(lambda: (p := _child(process.pid, "-m worker")) != worker and p)
        resumed = _wait(lambda: jobs.find_one({"job_id": job_id, "status": "completed"}))
    served_meanwhile = _health(port)
    os.kill(api, signal.SIGKILL)
    new_api = _wait(lambda: (p := _child(process.pid, "granian")) != api and p)
    back = _wait(lambda: _health(port) == 200)
    process.send_signal(signal.SIGINT)
    code = process.wait(60)
    output = log.read_text()

    assert new_worker
    assert new_worker != worker
    assert running["status"] == "processing"
    assert resumed, output  # long before STALE_AFTER_S or WORKER_STALE_S
    assert (resumed["attempts"], resumed["lost_runs"]) == (2, 1)
    assert resumed["result"]["total_pages"] == PAGES
    assert "its predecessor in this slot died holding 1 jobs: handed back" in output
    assert served_meanwhile == 200  # the API kept serving while the worker was down
    assert new_api
    assert new_api != api
    assert back
    assert "worker exited with SIGKILL; restarting it in 1 s" in output
    assert "api exited with SIGKILL; restarting it in 1 s" in output
    assert code == 0
    assert _children(process.pid) == {}
    assert all(_gone(pid) for pid in (worker, new_worker, api, new_api))
    # What the killed API left behind was killed with it, so the new one had the port alone.
    assert api_workers
    assert all(_gone(pid) for pid in api_workers)


def _gone(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat[stat.rindex(")") + 2] == "Z"  # dead, waiting to be reaped
