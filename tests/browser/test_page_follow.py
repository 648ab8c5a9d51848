"""Following a job: a note when it stops moving (gone as soon as it moves)."""

from __future__ import annotations

from tests.browser.steps import (
    displayed,
    sign_in,
    text_of,
    upload,
    visible,
    wait,
)
from tests.pdfs import text_pdf


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
    wait(page, visible("chapter"), message="the chapter never showed")

    assert stalled == {
        "stall": "No progress for 2 s: waiting for a worker to start the job...",
        "connection": "Live",
        "job-status": "pending",
    }
    assert not displayed(page, "stall")
    assert text_of(page, "stall") == ""
