"""The page in real Chromium: Debian's ``chromium`` driven by its ``chromedriver`` (selenium),
against a real API (granian, emulator mode: the page's development sign-in) and a real worker
process, on the session's mongod and redis-server. Skipped, with the reason, when chromium or
chromedriver is not installed."""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from devstack.embedded import free_port
from devstack.token import emulator_token
from service.settings import Settings
from tests.conftest import PROJECT_ID, REPO_ROOT
from tests.support.auth_emulator import required_in_ci
from tests.support.pdfs import reader_pdf
from tests.support.server import granian_api

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
ARTIFACTS = REPO_ROOT / "tests" / "artifacts"
READER_PAGES = 60
HUGE_PAGES = 5000


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """One headless Chromium for the session (each test opens the page afresh)."""
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not os.access(path, os.X_OK)]
    if missing:
        required_in_ci(
            f"needs Debian's chromium and chromium-driver (missing: {', '.join(missing)})"
        )
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--no-first-run",
        "--window-size=1280,1600",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    yield driver
    driver.quit()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """The browser, with a clean slate; its console is printed (shown when a test fails)."""
    yield browser
    for entry in browser.get_log("browser"):
        print("console:", entry.get("level"), entry.get("message"))
    browser.get("about:blank")
    browser.delete_all_cookies()


class Api:
    """The API on a fixed port, so it can be stopped and started again under the page."""

    def __init__(self, settings: Settings, log: Path) -> None:
        self.settings = settings
        self.log = log
        self.port = free_port()
        self._server: AbstractContextManager[int] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        # Open event streams keep granian's graceful stop waiting (they end with their job):
        # the page's own stream would hold a stop for as long as the job runs.
        self._server = granian_api(
            self.settings, PROJECT_ID, self.log, port=self.port, GRANIAN_WORKERS_KILL_TIMEOUT="2"
        )
        self._server.__enter__()

    def stop(self) -> None:
        if self._server is not None:
            server, self._server = self._server, None
            server.__exit__(None, None, None)

    def call(self, method: str, path: str, user: str = "alice") -> httpx.Response:
        """One request as ``user`` (a development token), to check what the page did."""
        headers = {"Authorization": f"Bearer {emulator_token(user, PROJECT_ID)}"}
        return httpx.request(method, self.url + path, headers=headers, timeout=30)


@pytest.fixture
def api(app: Any, settings: Settings, tmp_path: Path) -> Iterator[Api]:
    """A running API (``app``: the session's indexes are in place, and the data is cleaned)."""
    server = Api(settings, tmp_path / "api.log")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def start_worker(settings: Settings, tmp_path: Path) -> Iterator[Callable[[], None]]:
    """``start_worker()``: ``python -m worker`` in its own process until the test ends."""
    processes: list[subprocess.Popen[bytes]] = []

    def start() -> None:
        environment = {
            **os.environ,
            "MONGODB_URL": settings.mongodb_url,
            "MONGODB_DB": settings.mongodb_db,
            "REDIS_URL": settings.redis_url,
            "FIREBASE_PROJECT_ID": PROJECT_ID,
            # One progress write per page: the stream has several changes to carry.
            "PROGRESS_INTERVAL_S": "0",
            "WORKER_METRICS_PORT": "0",
            "RENDER_PROCESSES": "1",
        }
        with open(tmp_path / "worker.log", "ab") as log:
            processes.append(
                subprocess.Popen(
                    [sys.executable, "-m", "worker"],
                    cwd=REPO_ROOT,
                    env=environment,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )

    yield start
    for process in processes:
        process.send_signal(signal.SIGTERM)
    for process in processes:
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="session")
def artifacts() -> Path:
    """Where screenshots go (gitignored)."""
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


@dataclass(frozen=True)
class Chapter:
    """A chapter the page can open: whose it is, where it is, and its reader URL path."""

    user: str
    book_id: str
    chapter_id: str
    job_id: str
    total_pages: int

    @property
    def path(self) -> str:
        return f"/books/{self.book_id}/chapters/{self.chapter_id}"


async def _everything(db: Any) -> dict[str, list[dict[str, Any]]]:
    return {name: await db[name].find().to_list() for name in await db.list_collection_names()}


async def _put_back(db: Any, snapshot: dict[str, list[dict[str, Any]]]) -> None:
    for name in await db.list_collection_names():
        await db[name].delete_many({})
    for name, docs in snapshot.items():
        if docs:
            await db[name].insert_many([dict(doc) for doc in docs])


@pytest.fixture(scope="module")
async def reader_snapshot(
    app: Any, settings: Settings, cert_server: Any, embeddings: Any
) -> tuple[Chapter, dict[str, list[dict[str, Any]]]]:
    """``reader_pdf(60)`` made into alice's chapter once per module by the real worker (rendered,
    stored, indexed for search), and every document the database then held."""
    from service.store.doorbell import create_queue
    from worker.indexing.indexer import Indexer
    from worker.wiring import create_worker

    services = app.state.services
    headers = {"Authorization": f"Bearer {cert_server.token('alice')}"}
    client: httpx.AsyncClient = app.state.test_client
    created = await client.post(
        "/api/v1/books/jobs",
        data={"book_id": "tides"},
        files={"file": ("ledger.pdf", reader_pdf(READER_PAGES), "application/pdf")},
        headers=headers,
    )
    assert created.status_code == 202, created.text
    worker = create_worker(
        settings, burst=True, poll_delay=0, redis_pool=create_queue(settings),
        handle_signals=False, ctx={"mongo_client": services.store.client},
    )  # fmt: skip
    try:
        await worker.main()
    finally:
        await worker.close()
    indexer = Indexer(services.store, settings, services.model, embeddings)
    while await indexer.index_next():
        pass
    job = (
        await client.get(f"/api/v1/books/jobs/{created.json()['job_id']}", headers=headers)
    ).json()
    assert job["status"] == "completed", job
    chapter = Chapter("alice", "tides", job["result"]["chapter_id"], job["job_id"], READER_PAGES)
    return chapter, await _everything(services.store.collections.db)


@pytest.fixture
async def reader_chapter(app: Any, reader_snapshot: Any) -> Chapter:
    """The module's prepared 60-page chapter, put back in the database for this test."""
    chapter, snapshot = reader_snapshot
    await _put_back(app.state.services.store.collections.db, snapshot)
    return chapter


def _webp(width: int, height: int, shade: int) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (width, height), (shade, shade, 255 - shade)).save(out, "WEBP", quality=50)
    return out.getvalue()


@pytest.fixture
async def huge_chapter(app: Any) -> Chapter:
    """A 5,000-page chapter of alice's, written straight into the store as the worker would
    leave it, cheaply: small images (each page its own thumbnail key, so every thumbnail the
    page loads is a request the browser records), three full page images, no words."""
    return await _stored_chapter(app, HUGE_PAGES, "Five thousand pages")


@pytest.fixture
async def scanned_chapter(app: Any) -> Chapter:
    """Three pages as a scan makes them: two read by OCR, one with no text at all."""
    return await _stored_chapter(app, 3, "Scanned letters", ocr_pages=2, pages_without_text=1)


async def _stored_chapter(app: Any, total: int, title: str, **counts: int) -> Chapter:
    from bson import Binary

    from service.domain.job import new_id, utcnow

    db = app.state.services.store.collections.db
    collections = app.state.services.store.collections
    chapter_id, job_id, now = new_id(), new_id(), utcnow()
    thumb, image = _webp(120, 155, 200), _webp(1240, 1600, 230)
    files, chunks, pages, entries = [], [], [], []
    for number in range(1, total + 1):
        keys = {"thumbnail": (f"chapters/{chapter_id}/thumb-{number}.webp", thumb, 120, 155)}
        if number <= 3:
            keys["image"] = (f"chapters/{chapter_id}/page-{number}.webp", image, 1240, 1600)
        refs = {}
        for kind, (key, data, width, height) in keys.items():
            files.append({
                "_id": key, "filename": key, "length": len(data), "chunkSize": 255 * 1024,
                "uploadDate": now, "metadata": {"content_type": "image/webp",
                                                "sha256": hashlib.sha256(data).hexdigest()},
            })  # fmt: skip
            chunks.append({"files_id": key, "n": 0, "data": Binary(data)})
            refs[kind] = {"key": key, "width": width, "height": height}
        pages.append({
            "_id": new_id(), "job_id": job_id, "chapter_id": chapter_id, "user_id": "alice",
            "page_index": number - 1, "content": f"Page {number}", "has_text": True,
            "image": refs.get("image"), "thumbnail": refs["thumbnail"], "text_source": "pdf",
            "words": Binary(b""), "words_width": 1240, "words_height": 1600, "links": [],
            "created_at": now, "updated_at": now,
        })  # fmt: skip
        entries.append({"page_number": number, "image": refs.get("image"),
                        "thumbnail": refs["thumbnail"], "has_text": True, "text_source": "pdf"})  # fmt: skip
    await db["page_images.files"].insert_many(files)
    await db["page_images.chunks"].insert_many(chunks)
    await collections.pages.insert_many(pages)
    await collections.chapters.insert_one({
        "chapter_id": chapter_id, "job_id": job_id, "user_id": "alice", "book_id": "atlas",
        "title": title, "slug": f"chapter-{chapter_id}", "total_pages": total, **counts,
        "source_file_id": new_id(), "source_filename": "atlas.pdf", "repaired": False,
        "pages": entries, "outline": [], "content_mode": "pdf_pages", "created_at": now,
        "search": {"status": "ready", "requested_at": now, "attempts": 1},
    })  # fmt: skip
    return Chapter("alice", "atlas", chapter_id, job_id, total)
