"""Signing out leaves nothing of the user on the page: the next user who signs in in the same
tab sees none of the previous user's jobs, chapters, page images or file names."""

from __future__ import annotations

from selenium.webdriver.common.by import By

from tests.browser.steps import (
    displayed,
    finished,
    list_reads,
    listed_job_id,
    sign_in,
    stats,
    text_of,
    upload,
    wait,
)
from tests.support.pdfs import text_pdf

TERMINAL = {"completed", "failed", "cancelled"}


def test_next_user_sees_nothing_of_the_previous_one(page, api, start_worker, tmp_path):
    diary = tmp_path / "alice-diary.pdf"
    diary.write_bytes(text_pdf(3, title="Alice's private chapter"))
    running = tmp_path / "alice-letters.pdf"
    running.write_bytes(text_pdf(60, title="Alice's letters"))
    start_worker()
    sign_in(page, api.url + "/", "alice")
    upload(page, diary)
    finished(page)
    finished_id = listed_job_id(page, "alice-diary.pdf")
    # A second job, still being watched (its stream open) when alice signs out, most likely.
    upload(page, running)
    wait(page, lambda d: text_of(d, "job-name") == "alice-letters.pdf", 60)
    wait(page, lambda d: d.find_elements(By.CSS_SELECTOR, "#live-pages .page"), message="no page")
    running_id = listed_job_id(page, "alice-letters.pdf")

    reads = list_reads(page)
    page.find_element(By.ID, "sign-out").click()
    sign_in(page, None, "bob")  # same tab, no reload
    wait(page, lambda d: list_reads(d) > reads, 60, "bob's list was never read")
    seen_after_sign_in = stats(page)
    wait(
        page,
        lambda _: api.call("GET", f"/api/v1/books/jobs/{running_id}").json()["status"] in TERMINAL,
        message="alice's second job never finished",
    )

    text = page.execute_script("return document.body.textContent")
    for trace in ("alice", "Alice", finished_id, running_id, "Uploaded", "Chapter created"):
        assert trace not in text
    assert text_of(page, "who-name") == "bob"
    sources = page.execute_script("return [...document.images].map(i => i.getAttribute('src'))")
    assert sources in ([], [None])  # the reader's one <img> stays in the page, with no source
    assert page.find_elements(By.CSS_SELECTOR, "#live-pages *, #r-layer *, #r-rail *") == []
    assert not displayed(page, "job")
    assert not displayed(page, "reader")
    assert (
        page.execute_script(
            "return Object.keys(localStorage).filter(k => !k.startsWith('pcj.prefs.'))"
        )
        == []
    )
    assert not displayed(page, "upload-progress")
    assert seen_after_sign_in["streamsOpen"] == 0
    assert stats(page)["streamsOpen"] == 0
