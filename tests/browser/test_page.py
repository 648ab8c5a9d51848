"""The page at / in real Chromium: sign in (development), upload, watch the job over the event
stream, read the chapter; the API stopped under it; file names and titles that contain HTML."""

from __future__ import annotations

from selenium.common.exceptions import NoAlertPresentException
from selenium.webdriver.common.by import By

from tests.browser.steps import (
    finished,
    job_requests,
    read_chapter,
    reader_ready,
    sign_in,
    stats,
    text_of,
    upload,
    wait,
)
from tests.support.pdfs import text_pdf


def test_upload_is_watched_over_the_stream_and_read_as_a_chapter(page, api, start_worker, tmp_path):
    pdf = tmp_path / "four-pages.pdf"
    pdf.write_bytes(text_pdf(4, title="Four pages"))
    sign_in(page, api.url + "/")

    upload(page, pdf)
    # The worker starts once the page watches the job: a fast one could finish four pages
    # before the stream opened, and the page would see only the end.
    wait(page, lambda d: text_of(d, "connection") == "Live", 60, "the stream never opened")
    start_worker()
    finished(page)

    seen = stats(page)
    requests = job_requests(page)
    job_id = page.execute_script("return document.querySelector('#job-list li').dataset.job")
    read_chapter(page)
    widths = [page.execute_script("return document.getElementById('r-image').naturalWidth")]
    for number in (2, 3, 4):
        page.find_element(By.ID, "r-next").click()
        reader_ready(page, number)
        widths.append(page.execute_script("return document.getElementById('r-image').naturalWidth"))
    first_words = page.execute_script(
        "return [...document.querySelectorAll('#r-layer .text-layer span')].slice(0, 4)"
        ".map(s => s.textContent).join('')"
    )

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
    assert text_of(page, "r-title") == "Four pages"
    assert text_of(page, "r-count") == "4"
    assert first_words == "Page 4 of 4"
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
    finished(page)

    seen = stats(page)
    assert reconnecting_seen["streamFailures"] >= 1
    assert reconnecting_seen["pollFailures"] >= 1
    assert text_of(page, "job-status") == "completed"
    assert text_of(page, "connection") == ""
    assert seen["states"][-1]["status"] == "completed"
    read_chapter(page)
    assert text_of(page, "r-count") == "3"


def test_file_names_and_titles_with_html_are_shown_as_text(page, api, start_worker, tmp_path):
    name = "<img src=x onerror=alert(1)>.pdf"
    title = "<script>alert(2)</script><b>bold</b>"
    pdf = tmp_path / name
    pdf.write_bytes(text_pdf(1, title=title))
    start_worker()
    sign_in(page, api.url + "/")

    upload(page, pdf)
    finished(page)
    listed = page.find_element(By.CSS_SELECTOR, "#job-list .job-name").text
    read_chapter(page)
    page.find_element(By.ID, "r-tab-about").click()

    assert text_of(page, "job-name") == name
    assert listed == name
    assert text_of(page, "r-title") == title
    assert page.find_element(By.CSS_SELECTOR, "#r-about .chapter-title").text == title
    assert page.find_element(By.CSS_SELECTOR, "#r-about .fact-file").text == name
    # Nothing was parsed as markup: no such image or script or bold element exists, no alert ran.
    assert page.find_elements(By.CSS_SELECTOR, "img[src='x'], #reader script, b") == []
    try:
        alert = page.switch_to.alert
        raise AssertionError(f"an alert ran: {alert.text}")
    except NoAlertPresentException:
        pass
