"""Following a job: a note when it stops moving (gone as soon as it moves), its row in "My jobs"
kept up to date from the watched job's events, a reloaded page that follows the running job again,
and a cancelled job's pages taken off the screen."""

from __future__ import annotations

from selenium.webdriver.common.by import By

from tests.browser.steps import (
    displayed,
    finished,
    list_reads,
    listed_job_id,
    read_chapter,
    sign_in,
    stats,
    text_of,
    upload,
    visible,
    wait,
)
from tests.support.pdfs import text_pdf

RECORD_ROW = """
window.rowSeen = [];
const list = document.getElementById('job-list');
new MutationObserver(() => {
  for (const row of list.querySelectorAll('li[data-job]')) {
    const seen = [row.querySelector('.job-status').textContent, row.querySelector('progress').value];
    const last = window.rowSeen[window.rowSeen.length - 1];
    if (!last || last[0] !== seen[0] || last[1] !== seen[1]) window.rowSeen.push(seen);
  }
}).observe(list, {subtree: true, childList: true, attributes: true, characterData: true});
"""


def test_page_says_when_a_job_stops_moving_and_clears_it_when_it_moves(
    page, api, start_worker, tmp_path
):
    pdf = tmp_path / "ten-pages.pdf"
    pdf.write_bytes(text_pdf(10))
    # The documented start-up hook: 2 s without progress instead of STALL_AFTER_S (20 s).
    sign_in(page, api.url + "/?stall_after_s=2")

    upload(page, pdf)  # no worker runs: the job waits, pending, with no progress
    wait(page, lambda d: displayed(d, "stall"), 60, "no note about a job that does not move")
    stalled = {name: text_of(page, name) for name in ("stall", "connection", "job-status")}
    start_worker()
    wait(
        page,
        lambda d: (
            text_of(d, "job-status") in {"processing", "completed"} and not displayed(d, "stall")
        ),
        message="the note stayed once the job moved",
    )
    finished(page)

    assert stalled == {
        "stall": "No progress for 2 s: waiting for a worker to start the job...",
        "connection": "Live",
        "job-status": "pending",
    }
    assert not displayed(page, "stall")
    assert text_of(page, "stall") == ""


def test_running_jobs_row_follows_the_watched_job_without_rereading_the_list(
    page, api, start_worker, tmp_path
):
    pdf = tmp_path / "twenty-pages.pdf"
    pdf.write_bytes(text_pdf(20))
    sign_in(page, api.url + "/")
    wait(page, lambda d: list_reads(d) == 1, 60, "the list was never read")
    page.execute_script(RECORD_ROW)

    upload(page, pdf)
    # The worker starts once the page watches the job, so that it sees the job run.
    wait(page, lambda d: text_of(d, "connection") == "Live", 60, "the stream never opened")
    start_worker()
    finished(page)
    job_id = listed_job_id(page, "twenty-pages.pdf")
    wait(page, lambda d: d.find_elements(By.CSS_SELECTOR, "#job-list .job-completed"), 30)

    row_seen = page.execute_script("return window.rowSeen")
    reads = list_reads(page)
    row = page.find_element(By.CSS_SELECTOR, f"#job-list li[data-job='{job_id}']")
    processing = {value for status, value in row_seen if status == "processing"}
    # Before, the row changed only when the list was read again (on each change of status).
    assert len(processing) >= 3, row_seen
    assert row_seen[-1] == ["completed", 100]
    assert row.find_element(By.CSS_SELECTOR, ".job-message").text == (
        "Chapter created successfully with 20 pages"
    )
    assert reads == 2  # on sign-in and after the upload: none per event
    assert stats(page)["polls"] == 0


def test_reloaded_page_follows_the_running_job_again(page, api, start_worker, tmp_path):
    pdf = tmp_path / "two-pages.pdf"
    pdf.write_bytes(text_pdf(2))
    sign_in(page, api.url + "/")
    upload(page, pdf)  # no worker yet: the job waits
    wait(page, lambda d: text_of(d, "connection") == "Live", 60, "the stream never opened")

    page.refresh()
    wait(page, visible("job"), 60, "the reloaded page shows no job")
    wait(page, lambda d: text_of(d, "connection") == "Live", 60, "not followed after reload")
    start_worker()
    finished(page)

    assert text_of(page, "job-name") == "two-pages.pdf"
    assert text_of(page, "job-status") == "completed"
    assert stats(page)["streamsOpened"] == 1  # this page load's own stream: nothing was clicked
    read_chapter(page)
    assert text_of(page, "r-count") == "2"


def test_cancelled_job_leaves_no_pages_on_screen(page, api, start_worker, tmp_path):
    pdf = tmp_path / "long.pdf"
    pdf.write_bytes(text_pdf(400))  # long enough to be still running when Cancel is clicked
    start_worker()
    sign_in(page, api.url + "/")
    upload(page, pdf)
    wait(page, lambda d: d.find_elements(By.CSS_SELECTOR, "#live-pages .page"), message="no page")

    page.find_element(By.ID, "cancel").click()
    wait(page, lambda d: text_of(d, "job-status") == "cancelled", 60, "the job was not cancelled")
    job_id = listed_job_id(page, "long.pdf")
    wait(
        page,
        lambda _: api.call("GET", f"/api/v1/books/jobs/{job_id}/pages").json()["rendered"] == 0,
        60,
        "the service kept the cancelled job's pages",
    )

    assert page.find_elements(By.CSS_SELECTOR, "#live-pages .page") == []
    assert not displayed(page, "live-pages")
    assert not displayed(page, "job-read")
