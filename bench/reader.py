"""The reader against the chapter grid it replaced, in headless Chromium, in the same run.

One chapter is made by a real worker (the first 200 pages of Debian's source2e.pdf when
texlive-latex-base-doc is installed, else a generated figure-heavy PDF of 200 pages: long
enough that 20 PageDowns over the grid do not reach its end) and served by two APIs on the
same database:

- the reader: this checkout's API, the chapter opened by its URL
  (``/books/{book_id}/chapters/{chapter_id}#page=1``), then 20 page turns (Right arrow);
- the grid: the page as it was before the reader (commit ``BASELINE``, taken from git history
  into a temporary directory and served by its own API), the chapter opened as a user did: the
  home page, *Read* on the job's row, then 20 PageDowns over the grid (which loads full-size
  page images into its small tiles: 13.6 MB when issue 21 was filed).

Figures, for each: bytes transferred to show page 1 (from navigation until the network is
quiet: the page's code, its JSON, the page image, thumbnails and the prefetched next page) and
to scroll through 20 pages; and for the reader, the time from opening the chapter's URL to its
first page drawn (the image decoded and a frame painted; the page's own
``window.pcj.reader.firstPageDrawnMs``, since navigation start), with a cold and a warm
browser cache. Bytes are what Chromium's network log counts as received (``encodedDataLength``:
headers and bodies as sent, after compression). The browser's cache is emptied before each
measurement; the user is signed in (development sign-in) before it and stays signed in.

Prints figures and ratios; never passes or fails. Run: .venv/bin/python bench/reader.py
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pymupdf

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bed import bench_env, connected, servers, submit, wait_http  # noqa: E402
from bench.pipeline import wait_done  # noqa: E402
from devstack.api import api_command  # noqa: E402
from devstack.embedded import free_port  # noqa: E402
from tests.support.pdfs import figure_heavy_pdf  # noqa: E402

# The last commit whose page showed a chapter as a grid of page images (before the reader).
BASELINE = "263deecc1a8d7e99137fa6fc295dd7ddce397843"
SOURCE2E = Path("/usr/share/doc/texlive-doc/latex/base/source2e.pdf")
PAGES = 200
TURNS = 20
OPENS = 5  # times the reader is opened by its URL, for the time to its first page
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
WINDOW = (1366, 900)
QUIET_S = 1.0  # the network is quiet after this long with nothing in flight
USER = "bench"  # the user bench.bed's jobs belong to
BOOK = "b"


def chapter_pdf() -> tuple[bytes, str]:
    """The PDF to read, and what it is."""
    if SOURCE2E.exists():
        source = pymupdf.open(SOURCE2E)
        out = pymupdf.open()
        out.insert_pdf(source, from_page=0, to_page=PAGES - 1)
        data = out.tobytes()
        return data, f"source2e.pdf, its first {PAGES} pages ({len(data) / 1e6:.1f} MB)"
    data = figure_heavy_pdf(PAGES)
    return data, f"a generated figure-heavy PDF of {PAGES} pages (source2e.pdf not installed)"


# ---------------------------------------------------------------------------------------------
# The servers: a worker, this checkout's API, and the page before the reader with its own API.


def start(command: list[str], cwd: Path, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """``command`` in its own process group (``stop`` ends the group), its output to ``log``."""
    with log.open("ab") as out:
        return subprocess.Popen(
            command, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL what is left of its process group (granian's worker outlives its
    main process when that is killed)."""
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(signal.SIGTERM)
    try:
        process.wait(20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)


def baseline_tree(directory: Path) -> Path | None:
    """The checkout at ``BASELINE`` in ``directory`` (``git archive``), or None without history."""
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", "--format=tar", BASELINE],
        capture_output=True,
        check=False,
    )
    if archive.returncode != 0:
        return None
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(directory, filter="data")
    return directory


def serve(tree: Path, env: dict[str, str], log: Path) -> tuple[subprocess.Popen[bytes], str]:
    """The API of the checkout at ``tree`` (its own code first on the path); its process, URL."""
    port = free_port()
    process = start(
        api_command(port, log_level="warning"), tree, {**env, "PYTHONPATH": str(tree)}, log
    )
    try:
        wait_http(port, timeout=60)
    except RuntimeError:
        stop(process)
        raise
    return process, f"http://127.0.0.1:{port}"


# ---------------------------------------------------------------------------------------------
# The browser and its network log.


def chromium() -> Any:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
        "--disable-background-networking", "--no-first-run",
        f"--window-size={WINDOW[0]},{WINDOW[1]}",
    ):  # fmt: skip
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    return webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))


def kind(url: str, resource: str) -> str:
    if "/page-images/" in url:
        return "thumbnails" if "/thumb-" in url else "page images"
    if "/api/" in url:
        return "JSON"
    if resource == "Document":
        return "HTML"
    return "code and styles"


@dataclass
class Traffic:
    """What the browser received, read from its performance log as it comes."""

    driver: Any
    requests: dict[str, tuple[str, str]] = field(default_factory=dict)  # id -> url, type
    pending: set[str] = field(default_factory=set)
    received: dict[str, int] = field(default_factory=dict)  # kind -> bytes
    count: dict[str, int] = field(default_factory=dict)  # kind -> responses

    def read(self) -> int:
        """Take in the log's new entries; how many network events there were."""
        events = 0
        for entry in self.driver.get_log("performance"):
            message = json.loads(entry["message"])["message"]
            method, params = message["method"], message.get("params", {})
            if not method.startswith("Network."):
                continue
            events += 1
            request_id = params.get("requestId")
            if method == "Network.requestWillBeSent":
                url = params["request"]["url"]
                if url.startswith("data:") or params.get("type") == "EventSource":
                    continue
                self.requests[request_id] = (url, params.get("type", ""))
                self.pending.add(request_id)
            elif method == "Network.loadingFinished" and request_id in self.requests:
                url, resource = self.requests[request_id]
                name = kind(url, resource)
                self.received[name] = self.received.get(name, 0) + params["encodedDataLength"]
                self.count[name] = self.count.get(name, 0) + 1
                self.pending.discard(request_id)
            elif method == "Network.loadingFailed":
                self.pending.discard(request_id)
        return events

    def reset(self) -> None:
        self.read()
        self.requests.clear()
        self.pending.clear()
        self.received.clear()
        self.count.clear()

    def quiet(self, limit_s: float = 60) -> None:
        """Return once nothing is in flight and nothing happened for ``QUIET_S``."""
        deadline = time.monotonic() + limit_s
        calm_since = time.monotonic()
        while time.monotonic() < deadline:
            if self.read() or self.pending:
                calm_since = time.monotonic()
            elif time.monotonic() - calm_since >= QUIET_S:
                return
            time.sleep(0.1)
        raise TimeoutError(f"the network was not quiet in {limit_s:.0f} s: {self.pending}")

    @property
    def total(self) -> int:
        return sum(self.received.values())


def until(driver: Any, script: str, *args: Any, limit_s: float = 60) -> Any:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        value = driver.execute_script(script, *args)
        if value:
            return value
        time.sleep(0.02)
    shown = driver.execute_script(
        "return [location.href, document.getElementById('error')?.textContent]"
    )
    raise TimeoutError(f"{script.strip()}\n  the page: {shown}")


def sign_in(driver: Any, url: str) -> None:
    """The development sign-in, as ``USER`` (the same form on both pages)."""
    from selenium.webdriver.common.by import By

    driver.get(url)
    until(driver, "return !document.getElementById('dev-sign-in').hidden")
    box = driver.find_element(By.ID, "dev-user")
    box.clear()
    box.send_keys(USER)
    driver.find_element(By.CSS_SELECTOR, "#dev-sign-in button[type=submit]").click()
    until(driver, "return !document.getElementById('app').hidden")


def cold(driver: Any, traffic: Traffic) -> None:
    """An empty cache and a fresh log, the session kept."""
    driver.get("about:blank")
    driver.execute_cdp_cmd("Network.clearBrowserCache", {})
    traffic.reset()


def press(driver: Any, key: str) -> None:
    from selenium.webdriver.common.action_chains import ActionChains

    ActionChains(driver).send_keys(key).perform()


DRAWN = """
const image = document.getElementById('r-image');
return image.complete && image.naturalWidth > 0 && image.dataset.page === String(arguments[0]);
"""


@dataclass
class Figures:
    first: dict[str, int]
    first_count: dict[str, int]
    turns: dict[str, int]
    turns_count: dict[str, int]
    pages_passed: int
    opened_ms: list[float] = field(default_factory=list)
    warm_ms: list[float] = field(default_factory=list)


def measure_reader(driver: Any, url: str, path: str) -> Figures:
    from selenium.webdriver.common.keys import Keys

    traffic = Traffic(driver)
    sign_in(driver, url + "/")
    cold(driver, traffic)
    driver.get(f"{url}{path}#page=1")
    until(driver, "return window.pcj?.reader?.firstPageDrawnMs != null")
    opened_ms = [driver.execute_script("return window.pcj.reader.firstPageDrawnMs")]
    traffic.quiet()
    first, first_count = dict(traffic.received), dict(traffic.count)

    traffic.reset()
    for number in range(2, TURNS + 2):
        press(driver, Keys.ARROW_RIGHT)
        until(driver, DRAWN, number)
    traffic.quiet()
    figures = Figures(first, first_count, dict(traffic.received), dict(traffic.count), TURNS)

    for _ in range(OPENS - 1):
        cold(driver, traffic)
        driver.get(f"{url}{path}#page=1")
        opened_ms.append(until(driver, "return window.pcj?.reader?.firstPageDrawnMs ?? null"))
    for _ in range(OPENS):  # the page's code and the first page cached; the chapter read again
        driver.get("about:blank")
        driver.get(f"{url}{path}#page=1")
        figures.warm_ms.append(until(driver, "return window.pcj?.reader?.firstPageDrawnMs ?? null"))
    figures.opened_ms = opened_ms
    return figures


TILE_DRAWN = """
const image = document.querySelector('#chapter-view img');
return image !== null && image.complete && image.naturalWidth > 0;
"""
PASSED = """
const figures = [...document.querySelectorAll('#chapter-view figure.page')];
return figures.filter(f => f.getBoundingClientRect().top < window.innerHeight).length;
"""


def measure_grid(driver: Any, url: str, job_id: str) -> Figures:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    traffic = Traffic(driver)
    sign_in(driver, url + "/")
    cold(driver, traffic)
    driver.get(url + "/")
    row = f"#job-list li[data-job='{job_id}'] button[data-action=read]"
    until(driver, "return document.querySelector(arguments[0]) !== null", row)
    # The job was not made in this browser: the grid asked for its book in the upload form.
    driver.execute_script("document.getElementById('book-id').value = arguments[0]", BOOK)
    driver.find_element(By.CSS_SELECTOR, row).click()
    until(driver, TILE_DRAWN)
    traffic.quiet()
    first, first_count = dict(traffic.received), dict(traffic.count)

    traffic.reset()
    driver.execute_script("document.activeElement?.blur()")
    for _ in range(TURNS):
        press(driver, Keys.PAGE_DOWN)
        time.sleep(0.3)  # a reader's pace: the lazy images in view start loading
    traffic.quiet()
    passed = driver.execute_script(PASSED)
    return Figures(first, first_count, dict(traffic.received), dict(traffic.count), passed)


# ---------------------------------------------------------------------------------------------


def mb(count: int) -> str:
    return f"{count / 1e6:.2f} MB" if count >= 100_000 else f"{count / 1e3:.0f} kB"


def breakdown(received: dict[str, int], count: dict[str, int]) -> str:
    return ", ".join(
        f"{name} {mb(size)} ({count[name]})"
        for name, size in sorted(received.items(), key=lambda item: -item[1])
    )


def report(what: str, reader: Figures, grid: Figures | None) -> None:
    print(f"\nOne chapter: {what}; Chromium headless at {WINDOW[0]}x{WINDOW[1]}, loopback.")
    print("\nbytes received (encodedDataLength; in brackets: responses)")
    rows: list[tuple[str, Figures]] = [("reader", reader)]
    if grid is not None:
        rows.append(("grid (before the reader)", grid))
    for name, figures in rows:
        first, turns = sum(figures.first.values()), sum(figures.turns.values())
        print(f"  {name}")
        print(f"    open the chapter, page 1 shown: {mb(first)}: "
              f"{breakdown(figures.first, figures.first_count)}")  # fmt: skip
        how = "20 page turns (Right arrow)" if figures is reader else f"{TURNS} PageDowns"
        print(f"    {how}, {figures.pages_passed} pages passed: {mb(turns)}: "
              f"{breakdown(figures.turns, figures.turns_count)}")  # fmt: skip
        if figures.pages_passed:
            # A page passed in the grid is a 359 px tile, too small to read; in the reader, a
            # page shown at a readable size.
            print(f"    per page passed: {turns / figures.pages_passed / 1e3:.0f} kB")
    if grid is not None:
        for label, ours, theirs in (
            ("page 1", sum(reader.first.values()), sum(grid.first.values())),
            ("20 pages", sum(reader.turns.values()), sum(grid.turns.values())),
        ):
            print(f"  grid / reader, {label}: {theirs / ours:.1f}x")
        per_reader = sum(reader.turns.values()) / reader.pages_passed
        per_grid = sum(grid.turns.values()) / max(grid.pages_passed, 1)
        print(f"  grid / reader, per page passed: {per_grid / per_reader:.1f}x")
    else:
        print(f"  grid: not measured (commit {BASELINE[:7]} is not in this clone's history)")
    print("\nopening the chapter's URL -> first page drawn (ms since navigation start)")
    for label, values in (("cold cache", reader.opened_ms), ("warm cache", reader.warm_ms)):
        print(
            f"  {label}: median {statistics.median(values):.0f}, "
            f"min {min(values):.0f}, max {max(values):.0f} ({len(values)} opens)"
        )


async def main(args: argparse.Namespace) -> None:
    if not all(os.access(path, os.X_OK) for path in (CHROMIUM, CHROMEDRIVER)):
        sys.exit(
            "needs Debian's chromium and chromium-driver: apt-get install chromium chromium-driver"
        )
    data, what = chapter_pdf()
    with contextlib.ExitStack() as cleanup:  # last in, first out: browsers, APIs, worker, bed
        bed = cleanup.enter_context(servers("pcj-reader-"))

        def keep(process: subprocess.Popen[bytes]) -> None:
            cleanup.callback(stop, process)

        env = bench_env(bed, LOG_LEVEL="WARNING")
        async with connected(bed) as (_, store, queue):
            keep(start([sys.executable, "-m", "worker"], ROOT, env, bed.tmp / "worker.log"))
            job_id = await submit(store, queue, data, "chapter.pdf")
            job = await wait_done(store, job_id)
        if job["status"] != "completed":
            sys.exit(f"the chapter was not made: {job.get('status')} {job.get('error')}")
        chapter_id = job["result"]["chapter_id"]
        api, url = serve(ROOT, env, bed.tmp / "api.log")
        keep(api)
        old_tree = baseline_tree(bed.tmp / "baseline") if not args.no_baseline else None
        old_url = None
        if old_tree is not None:
            old_api, old_url = serve(old_tree, env, bed.tmp / "baseline-api.log")
            keep(old_api)
        driver = chromium()
        cleanup.callback(driver.quit)
        reader = measure_reader(driver, url, f"/books/{BOOK}/chapters/{chapter_id}")
        grid = None
        if old_url is not None:
            driver = chromium()  # a new profile: nothing of the reader's session
            cleanup.callback(driver.quit)
            grid = measure_grid(driver, old_url, job_id)
        report(what, reader, grid)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-baseline", action="store_true", help="measure the reader only")
    asyncio.run(main(parser.parse_args()))
