"""The page in real Chromium: Debian's ``chromium`` driven by its ``chromedriver`` (selenium),
against a real API (granian, emulator mode: the page's development sign-in) and a real worker
process, on the session's mongod and redis-server. Skipped, with the reason, when chromium or
chromedriver is not installed."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import httpx
import pytest

from devstack.embedded import free_port
from devstack.token import emulator_token
from service.settings import Settings
from tests.conftest import PROJECT_ID, REPO_ROOT
from tests.support.server import granian_api

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
ARTIFACTS = REPO_ROOT / "tests" / "artifacts"


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """One headless Chromium for the session (each test opens the page afresh)."""
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not os.access(path, os.X_OK)]
    if missing:
        pytest.skip(f"needs Debian's chromium and chromium-driver (missing: {', '.join(missing)})")
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
