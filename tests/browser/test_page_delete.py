"""Deleting from the page, after a confirmation that says what goes: a finished job from "My
jobs" (its record only: the chapter stays), and a chapter from the reader (its pages, their images
and text). The API confirms each."""

from __future__ import annotations

from typing import Any

from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions

from tests.browser.steps import (
    displayed,
    finished,
    listed_job_id,
    read_chapter,
    sign_in,
    text_of,
    upload,
    wait,
)
from tests.support.pdfs import text_pdf

BOOK = "my-book"  # the page's default book


def confirmation(driver: Any) -> Any:
    return wait(driver, expected_conditions.alert_is_present(), 10, "no confirmation asked")


def finished_chapter(page: Any, api: Any, start_worker: Any, pdf: Any) -> tuple[str, str]:
    """Upload ``pdf``, wait for its chapter; the job's id and the chapter's id."""
    start_worker()
    sign_in(page, api.url + "/")
    upload(page, pdf)
    finished(page)
    job_id = listed_job_id(page, pdf.name)
    chapter_id: str = api.call("GET", f"/api/v1/books/jobs/{job_id}").json()["result"]["chapter_id"]
    return job_id, chapter_id


def test_finished_job_is_deleted_from_my_jobs_once_confirmed(page, api, start_worker, tmp_path):
    pdf = tmp_path / "to-forget.pdf"
    pdf.write_bytes(text_pdf(2))
    job_id, chapter_id = finished_chapter(page, api, start_worker, pdf)
    row = f"#job-list li[data-job='{job_id}']"
    wait(page, lambda d: d.find_elements(By.CSS_SELECTOR, f"{row}.job-completed"), 30)

    page.find_element(By.CSS_SELECTOR, f"{row} button[data-action=delete]").click()
    confirmation(page).dismiss()
    kept_after_dismiss = api.call("GET", f"/api/v1/books/jobs/{job_id}").status_code
    page.find_element(By.CSS_SELECTOR, f"{row} button[data-action=delete]").click()
    alert = confirmation(page)
    question = alert.text
    alert.accept()
    wait(page, lambda d: not d.find_elements(By.CSS_SELECTOR, row), 30, "the row stayed")

    assert kept_after_dismiss == 200
    assert "to-forget.pdf" in question
    assert "Only the job's record is deleted" in question
    assert "Its chapter stays" in question
    assert text_of(page, "notice") == "Deleted to-forget.pdf from My jobs."
    assert api.call("GET", f"/api/v1/books/jobs/{job_id}").status_code == 404
    assert api.call("GET", f"/api/v1/books/{BOOK}/chapters/{chapter_id}").status_code == 200


def test_chapter_is_deleted_from_the_reader_once_confirmed(page, api, start_worker, tmp_path):
    pdf = tmp_path / "to-delete.pdf"
    pdf.write_bytes(text_pdf(2, title="Chapter to delete"))
    job_id, chapter_id = finished_chapter(page, api, start_worker, pdf)
    read_chapter(page)
    row = f"#job-list li[data-job='{job_id}']"

    page.find_element(By.ID, "r-tab-about").click()
    page.find_element(By.CSS_SELECTOR, "#r-about button[data-action=delete-chapter]").click()
    alert = confirmation(page)
    question = alert.text
    alert.accept()
    wait(page, lambda d: not displayed(d, "reader"), 30, "the reader stayed on screen")
    wait(page, lambda d: d.find_elements(By.CSS_SELECTOR, f"{row}.job-chapter-deleted"), 30)
    job_message = page.find_element(By.CSS_SELECTOR, f"{row} .job-message").text
    row_actions = [b.text for b in page.find_elements(By.CSS_SELECTOR, f"{row} button")]
    page.find_element(By.CSS_SELECTOR, f"{row} button[data-action=delete]").click()
    job_question = confirmation(page)
    job_question_text = job_question.text
    job_question.dismiss()

    assert "Chapter to delete" in question
    assert "2 pages are deleted for good: their images, text and words" in question
    assert page.find_elements(By.CSS_SELECTOR, "#r-layer *") == []
    assert text_of(page, "notice") == 'Deleted the chapter "Chapter to delete".'
    chapter = f"/api/v1/books/{BOOK}/chapters/{chapter_id}"
    assert api.call("GET", chapter).status_code == 404
    assert api.call("GET", f"{chapter}/pages").status_code == 404
    job = api.call("GET", f"/api/v1/books/jobs/{job_id}")
    assert job.status_code == 200  # as the UI said
    assert job.json()["chapter_deleted_at"]
    # The job says its chapter is gone, offers no Read, and its delete dialog does not pretend.
    assert job_message == "Its chapter was deleted"
    assert row_actions == ["Delete"]
    assert "Its chapter was already deleted" in job_question_text
    assert "Its chapter stays" not in job_question_text
