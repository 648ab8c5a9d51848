"""What the page shows, as a user sees it: `hidden` hides (no stylesheet rule overrides it), the
upload progress bar appears with an upload and goes when it is refused, a failed job shows no
bar, and a narrow window or a long file name never makes the page scroll sideways."""

from __future__ import annotations

from typing import Any

from selenium.webdriver.common.by import By

from tests.browser.steps import (
    displayed,
    finished,
    listed_job_id,
    sign_in,
    text_of,
    upload,
    visible,
    wait,
)
from tests.conftest import PROJECT_ID
from tests.support.pdfs import garbage_after_header, text_pdf
from tests.support.server import granian_api

SHOWN_BUT_HIDDEN = """
return [...document.querySelectorAll('[hidden]')]
  .filter(e => getComputedStyle(e).display !== 'none')
  .map(e => e.id || e.className || e.tagName)
"""

WIDER_THAN_THE_WINDOW = """
const width = document.documentElement.clientWidth;
return [...document.querySelectorAll('#app *')]
  .filter(e => e.getClientRects().length && e.getBoundingClientRect().right > width + 0.5)
  .map(e => `${e.tagName.toLowerCase()}#${e.id}.${e.className}`)
"""

# Blocks whose text runs out of them (a long name that does not wrap overflows its heading).
OVERFLOWING_TEXT = """
return [...document.querySelectorAll('#app h2, #app p')]
  .filter(e => e.getClientRects().length && e.scrollWidth > e.clientWidth + 1)
  .map(e => `${e.tagName.toLowerCase()}#${e.id}.${e.className}`)
"""


def test_finished_job_offers_its_chapter_and_not_its_live_pages(page, api, start_worker, tmp_path):
    pdf = tmp_path / "three-pages.pdf"
    pdf.write_bytes(text_pdf(3))
    start_worker()
    sign_in(page, api.url + "/")

    upload(page, pdf)
    finished(page)

    assert displayed(page, "job-read")
    assert not displayed(page, "live-pages")
    assert len(page.find_elements(By.CSS_SELECTOR, "#live-pages .page")) == 3  # kept, hidden
    # No element the page hides is drawn anyway (a class's `display` beating `hidden`).
    assert page.execute_script(SHOWN_BUT_HIDDEN) == []


def test_page_without_emulator_mode_offers_no_development_sign_in(app, page, settings, tmp_path):
    # Not in emulator mode and no FIREBASE_WEB_API_KEY: the page says sign-in is not configured.
    with granian_api(
        settings, PROJECT_ID, tmp_path / "api.log", FIREBASE_AUTH_EMULATOR_HOST=""
    ) as port:
        page.get(f"http://127.0.0.1:{port}/")
        wait(page, visible("no-sign-in"), 30, "no word about sign-in")

        assert displayed(page, "no-sign-in")
        assert not displayed(page, "dev-sign-in")  # `.row` made it a flex box, shown anyway
        assert page.execute_script(SHOWN_BUT_HIDDEN) == []


def test_upload_progress_bar_shows_only_once_an_upload_starts(page, api, tmp_path):
    pdf = tmp_path / "one-page.pdf"
    pdf.write_bytes(text_pdf(1))
    sign_in(page, api.url + "/")
    before = displayed(page, "upload-progress")

    upload(page, pdf)
    wait(page, lambda d: text_of(d, "upload-text") == "Uploaded one-page.pdf", 60)

    assert before is False
    assert displayed(page, "upload-progress")
    assert page.find_element(By.ID, "upload-progress").get_property("value") == 100


def fits(driver: Any) -> dict[str, Any]:
    sizes: dict[str, Any] = driver.execute_script(
        "return {scroll: document.documentElement.scrollWidth, inner: window.innerWidth}"
    )
    sizes["wider"] = driver.execute_script(WIDER_THAN_THE_WINDOW)
    sizes["overflowing"] = driver.execute_script(OVERFLOWING_TEXT)
    return sizes


def test_page_fits_a_narrow_window_with_a_long_file_name(
    page, api, start_worker, tmp_path, artifacts
):
    name = "chapter_" + "x" * 188 + ".pdf"  # 200 characters, no space
    pdf = tmp_path / name
    pdf.write_bytes(text_pdf(2))
    start_worker()
    try:
        page.set_window_size(400, 900)
        sign_in(page, api.url + "/")
        upload(page, pdf)
        finished(page)
        wait(page, lambda d: d.find_elements(By.CSS_SELECTOR, "#job-list .job-completed"), 60)
        narrow = fits(page)
        page.save_screenshot(str(artifacts / "narrow-window.png"))
        buttons = page.execute_script(
            "return [...document.querySelectorAll('#job-list button')]"
            ".map(b => [b.textContent, b.getBoundingClientRect().right])"
        )
        page.set_window_size(1280, 1600)
        wait(page, lambda d: d.execute_script("return window.innerWidth") > 1000, 10)
        wide = fits(page)
    finally:
        page.set_window_size(1280, 1600)

    assert len(name) == 200
    assert text_of(page, "job-name") == name
    assert narrow["inner"] <= 420, "the window did not get narrow"
    assert narrow["scroll"] <= narrow["inner"], narrow
    assert narrow["wider"] == []
    assert narrow["overflowing"] == []
    assert buttons
    assert all(right <= narrow["inner"] for _, right in buttons), buttons
    assert wide["scroll"] <= wide["inner"], wide
    assert wide["wider"] == []
    assert wide["overflowing"] == []


def test_refused_upload_and_failed_job_leave_no_progress_bar(page, api, start_worker, tmp_path):
    not_a_pdf = tmp_path / "notes.pdf"
    not_a_pdf.write_bytes(b"These are notes, not a PDF.\n" * 100)
    broken = tmp_path / "broken.pdf"
    broken.write_bytes(garbage_after_header())
    start_worker()
    sign_in(page, api.url + "/")

    upload(page, not_a_pdf)
    wait(page, visible("error"), 60, "the upload was not refused")
    refused = {"bar": displayed(page, "upload-progress"), "error": text_of(page, "error")}
    upload(page, broken)
    wait(page, lambda d: text_of(d, "job-status") == "failed", message="the job never failed")
    row = f"#job-list li[data-job='{listed_job_id(page, 'broken.pdf')}']"
    wait(page, lambda d: d.find_element(By.CSS_SELECTOR, f"{row} .job-status").text == "failed")

    assert refused["bar"] is False
    assert refused["error"].startswith("Upload failed")
    assert not displayed(page, "job-progress")
    assert text_of(page, "job-percent") == ""
    assert page.find_elements(By.CSS_SELECTOR, f"{row} progress") == []
