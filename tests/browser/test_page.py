"""The page at / in real Chromium: sign in (development), upload, watch the job over the event
stream, read the chapter; the API stopped under it; file names and titles that contain HTML."""

from __future__ import annotations

from selenium.common.exceptions import NoAlertPresentException
from selenium.webdriver.common.by import By

from tests.browser.steps import (
    images_loaded,
    job_requests,
    sign_in,
    stats,
    text_of,
    upload,
    visible,
    wait,
)
from tests.support.pdfs import text_pdf


def test_upload_is_watched_over_the_stream_and_read_as_a_chapter(
    page, api, start_worker, tmp_path, artifacts
):
    pdf = tmp_path / "four-pages.pdf"
    pdf.write_bytes(text_pdf(4, title="Four pages"))
    sign_in(page, api.url + "/")

    upload(page, pdf)
    # The worker starts once the page watches the job: a fast one could finish four pages
    # before the stream opened, and the page would see only the end.
    wait(page, lambda d: text_of(d, "connection") == "Live", 60, "the stream never opened")
    start_worker()
    wait(page, visible("chapter"), message="the chapter never showed")

    seen = stats(page)
    requests = job_requests(page)
    job_id = page.execute_script("return document.querySelector('#job-list li').dataset.job")
    figures = page.find_elements(By.CSS_SELECTOR, "#chapter-view .page")
    widths = images_loaded(page)
    first_text = figures[0].find_element(By.CSS_SELECTOR, ".text-toggle")
    first_text.click()
    wait(page, lambda _: "Page 1 of 4" in figures[0].find_element(By.TAG_NAME, "pre").text, 30)
    screenshot = artifacts / "chapter-view.png"
    page.execute_async_script(  # every image decoded and painted before the picture is taken
        "const done = arguments[arguments.length - 1];"
        "Promise.all([...document.querySelectorAll('#chapter-view img')]"
        ".map(i => i.decode().catch(() => null))).then(() => requestAnimationFrame(() => done()))"
    )
    page.find_element(By.ID, "chapter").screenshot(str(screenshot))
    print(f"screenshot of the chapter view: {screenshot}")

    assert page.find_element(By.ID, "upload-progress").get_property("value") == 100
    assert text_of(page, "job-status") == "completed"
    assert text_of(page, "job-message") == "Chapter created successfully with 4 pages"
    # Every change came through the stream: no poll, one stream token, several progress events.
    assert seen["polls"] == 0
    assert seen["streamFailures"] == 0
    assert [r for r in requests if r.endswith(f"/jobs/{job_id}")] == []
    assert len([r for r in requests if r.endswith(f"/jobs/{job_id}/stream-token")]) == 1
    assert {state["via"] for state in seen["states"]} == {"stream"}
    assert "processing" in [state["status"] for state in seen["states"]]
    assert seen["states"][-1] == {"status": "completed", "progress": 100, "via": "stream"}
    assert seen["streamPageEvents"] >= 1
    # Page events carry their image URLs: the pages shown while rendering needed no read.
    assert [r for r in requests if f"/jobs/{job_id}/pages" in r] == []
    assert text_of(page, "chapter-view").startswith("Four pages")
    assert len(figures) == 4
    assert len(widths) == 4
    assert all(width > 0 for width in widths)


def test_page_reconnects_while_the_api_is_down_then_finishes(page, api, start_worker, tmp_path):
    pdf = tmp_path / "three-pages.pdf"
    pdf.write_bytes(text_pdf(3))
    sign_in(page, api.url + "/")
    upload(page, pdf)
    # No worker yet: the job waits, pending, and the page holds its stream.
    wait(page, lambda d: text_of(d, "connection") == "Live", 60, "the stream never opened")
    assert text_of(page, "job-status") == "pending"

    api.stop()
    wait(page, lambda d: text_of(d, "connection") == "Reconnecting...", 60, "no reconnecting")
    reconnecting_seen = stats(page)
    start_worker()  # the job runs while the API is down
    api.start()
    wait(page, visible("chapter"), message="the page never finished after the API came back")

    seen = stats(page)
    assert reconnecting_seen["streamFailures"] >= 1
    assert reconnecting_seen["pollFailures"] >= 1
    assert text_of(page, "job-status") == "completed"
    assert text_of(page, "connection") == ""
    assert seen["states"][-1]["status"] == "completed"
    assert len(page.find_elements(By.CSS_SELECTOR, "#chapter-view .page")) == 3


def test_file_names_and_titles_with_html_are_shown_as_text(page, api, start_worker, tmp_path):
    name = "<img src=x onerror=alert(1)>.pdf"
    title = "<script>alert(2)</script><b>bold</b>"
    pdf = tmp_path / name
    pdf.write_bytes(text_pdf(1, title=title))
    start_worker()
    sign_in(page, api.url + "/")

    upload(page, pdf)
    wait(page, visible("chapter"), message="the chapter never showed")

    assert text_of(page, "job-name") == name
    assert page.find_element(By.CSS_SELECTOR, "#chapter-view .chapter-title").text == title
    assert page.find_element(By.CSS_SELECTOR, "#chapter-view .chapter-file").text == name
    assert page.find_element(By.CSS_SELECTOR, "#job-list .job-name").text == name
    # Nothing was parsed as markup: no such image or script or bold element exists, no alert ran.
    assert page.find_elements(By.CSS_SELECTOR, "img[src='x'], #chapter-view script, b") == []
    try:
        alert = page.switch_to.alert
        raise AssertionError(f"an alert ran: {alert.text}")
    except NoAlertPresentException:
        pass
