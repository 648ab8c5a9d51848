"""What a user does on the page, and what a test reads from it, as small selenium steps.

Every wait is bounded; nothing here measures time."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

JOB_TIMEOUT_S = 180  # a loaded 2-core machine renders slowly; nothing here asserts on time


def wait(driver: Any, condition: Any, timeout: float = JOB_TIMEOUT_S, message: str = "") -> Any:
    return WebDriverWait(driver, timeout, poll_frequency=0.1).until(condition, message)


def visible(element_id: str) -> Any:
    """The element's ``hidden`` property is false (what the page's code set)."""
    return lambda driver: (
        not driver.execute_script("return document.getElementById(arguments[0]).hidden", element_id)
    )


def displayed(driver: Any, element_id: str) -> bool:
    """What the user sees: the element is rendered (selenium's ``is_displayed``)."""
    shown: bool = driver.find_element(By.ID, element_id).is_displayed()
    return shown


def text_of(driver: Any, element_id: str) -> str:
    text: str = driver.execute_script(
        "return document.getElementById(arguments[0]).textContent", element_id
    )
    return text


def sign_in(driver: Any, url: str | None, user: str = "alice") -> None:
    """Open the page at ``url`` (None: the page already open) and sign in as ``user``."""
    if url is not None:
        driver.get(url)
    wait(driver, visible("dev-sign-in"), 30, "no development sign-in offered")
    wait(driver, visible("sign-in"), 30, "the sign-in form is not shown")
    field = driver.find_element(By.ID, "dev-user")
    field.clear()
    field.send_keys(user)
    driver.find_element(By.CSS_SELECTOR, "#dev-sign-in button[type=submit]").click()
    signed_in = (
        "return !document.getElementById('app').hidden || !document.getElementById('reader').hidden"
    )
    wait(driver, lambda d: d.execute_script(signed_in), 30, "sign-in did not open the page")


def upload(driver: Any, pdf: Path) -> None:
    driver.find_element(By.ID, "file").send_keys(str(pdf))
    driver.find_element(By.ID, "upload-button").click()


def stats(driver: Any) -> dict[str, Any]:
    result: dict[str, Any] = driver.execute_script("return window.pcj.stats")
    return result


def listed_job_id(driver: Any, filename: str) -> str:
    """The id of the job of ``filename`` in "My jobs", once it is listed."""
    found = """
    const row = [...document.querySelectorAll('#job-list li[data-job]')]
      .find(li => li.querySelector('.job-name').textContent === arguments[0]);
    return row ? row.dataset.job : null;
    """
    job_id: str = wait(driver, lambda d: d.execute_script(found, filename), 60, "not listed")
    return job_id


def list_reads(driver: Any) -> int:
    """How many times the page has read "My jobs" (GET /api/v1/books/jobs/?limit=...)."""
    count: int = driver.execute_script(
        "return performance.getEntriesByType('resource')"
        ".filter(e => e.name.includes('/api/v1/books/jobs/?limit=')).length"
    )
    return count


def job_requests(driver: Any) -> list[str]:
    """The URLs of the page's requests under /api/v1/books/jobs/, as the browser recorded them."""
    urls: list[str] = driver.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name)"
        ".filter(n => n.includes('/api/v1/books/jobs/'))"
    )
    return urls


def finished(driver: Any) -> None:
    """Wait for the watched job to end with a chapter to read."""
    wait(driver, visible("job-read"), message="the job never finished with a chapter")


def reader_ready(driver: Any, number: int | None = None, timeout: float = 60) -> None:
    """Wait for the reader to show page ``number`` (any page: None) drawn, its words laid over."""
    script = """
    const image = document.getElementById('r-image');
    const reader = document.getElementById('reader');
    return !reader.hidden && image.complete && image.naturalWidth > 0
      && image.dataset.page === String(arguments[0] ?? image.dataset.page)
      && document.querySelectorAll('#r-layer .text-layer').length === 1;
    """
    try:
        wait(driver, lambda d: d.execute_script(script, number), timeout)
    except Exception as exc:
        shown = driver.execute_script(
            "return [location.href, document.getElementById('r-image').dataset.page]"
        )
        raise AssertionError(f"page {number} not drawn; the reader shows {shown}") from exc


def read_chapter(driver: Any) -> None:
    """Open the watched job's chapter in the reader and wait for its first page."""
    driver.find_element(By.ID, "job-read").click()
    reader_ready(driver, 1)


def shown_page(driver: Any) -> int:
    """The page the reader shows (its image's page number)."""
    number: str = driver.execute_script("return document.getElementById('r-image').dataset.page")
    return int(number)
