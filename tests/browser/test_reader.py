"""The reader in real Chromium, on a 60-page chapter the real worker made (reader_pdf: an
outline, links, a sentence of its own on every page): its URL, page turns by key, zoom, the text
layer, find, search, outline and links, a reload, and a 5,000-page chapter's rail."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

from tests.browser.steps import reader_ready, shown_page, sign_in, text_of, wait
from tests.support.pdfs import READER_LINK, READER_SENTENCE, reader_sentence


def open_reader(page: Any, api: Any, chapter: Any, at: str = "") -> None:
    """Sign in with the reader's URL for ``chapter`` (``at``: its hash) as the address."""
    sign_in(page, f"{api.url}{chapter.path}{at}", chapter.user)


def press(page: Any, *keys: str) -> None:
    """Keys to the page, as a keyboard sends them to whatever has the focus."""
    page.switch_to.active_element.send_keys(*keys)


def layer_text(page: Any) -> str:
    text: str = page.execute_script(
        "return [...document.querySelectorAll('#r-layer .text-layer span')]"
        ".map(s => s.textContent).join('')"
    )
    return text


def test_chapter_opens_at_the_page_its_url_names_and_turns_by_key(page, api, reader_chapter):
    page.set_window_size(1366, 900)
    open_reader(page, api, reader_chapter, "#page=37")
    reader_ready(page, 37)
    opened = (shown_page(page), page.find_element(By.ID, "r-page").get_property("value"))
    sentence_shown = reader_sentence(37) in layer_text(page)

    press(page, Keys.ARROW_RIGHT)
    reader_ready(page, 38)
    after_right = page.execute_script("return location.hash")
    press(page, Keys.ARROW_LEFT, Keys.ARROW_LEFT)
    reader_ready(page, 36)
    press(page, Keys.END)
    reader_ready(page, 60)
    next_disabled = page.find_element(By.ID, "r-next").get_property("disabled")
    press(page, Keys.HOME)
    reader_ready(page, 1)
    field = page.find_element(By.ID, "r-page")
    field.send_keys(Keys.CONTROL, "a")
    field.send_keys("12", Keys.ENTER)
    reader_ready(page, 12)
    page.refresh()
    reader_ready(page, 12)

    assert opened == (37, "37")
    assert sentence_shown
    assert after_right == "#page=38"
    assert next_disabled is True
    assert text_of(page, "r-count") == "60"
    assert text_of(page, "r-title") == "The Lighthouse Ledger"
    assert page.execute_script("return location.pathname") == reader_chapter.path
    assert reader_sentence(12) in layer_text(page)


WINDOW_READS = (
    "return performance.getEntriesByType('resource')"
    ".filter(e => e.name.includes('/pages?offset=0&')).length"
)


def test_page_urls_are_read_again_before_they_expire(page, api, reader_chapter):
    open_reader(page, api, reader_chapter, "#page=5")
    reader_ready(page, 5)
    opened = page.execute_script(WINDOW_READS)
    press(page, Keys.ARROW_RIGHT)
    reader_ready(page, 6)
    fresh = page.execute_script(WINDOW_READS)

    # The tab open an hour (PAGE_URL_TTL_S): the URLs it holds are about to expire.
    page.execute_script("const now = Date.now; Date.now = () => now() + 3_600_000")
    press(page, Keys.ARROW_RIGHT)
    reader_ready(page, 7)
    stale = page.execute_script(WINDOW_READS)

    assert fresh == opened >= 1  # URLs still fresh: the turn read nothing again
    assert stale > fresh  # read again before the next page was drawn, not after it broke
    assert not page.find_element(By.ID, "error").is_displayed()


def test_next_page_is_fetched_while_this_one_is_read_and_full_screen_toggles(
    page, api, reader_chapter
):
    open_reader(page, api, reader_chapter, "#page=5")
    reader_ready(page, 5)
    images = (
        "return performance.getEntriesByType('resource').map(e => e.name)"
        ".filter(n => /\\/page-\\d+\\.webp/.test(n)).map(n => n.match(/page-(\\d+)/)[1])"
    )
    wait(page, lambda d: "6" in d.execute_script(images), 30, "page 6 was never prefetched")
    page.find_element(By.ID, "r-fullscreen").click()
    wait(page, lambda d: d.execute_script("return document.fullscreenElement !== null"), 10)
    pressed = page.find_element(By.ID, "r-fullscreen").get_attribute("aria-pressed")
    press(page, "f")
    wait(page, lambda d: d.execute_script("return document.fullscreenElement === null"), 10)

    assert sorted(set(page.execute_script(images)), key=int) == ["5", "6"]  # no further
    assert pressed == "true"
    assert page.find_element(By.ID, "r-fullscreen").get_attribute("aria-pressed") == "false"


def sheet_size(page: Any) -> dict[str, float]:
    size: dict[str, float] = page.execute_script(
        "const s = document.getElementById('r-sheet').getBoundingClientRect();"
        "const v = document.getElementById('r-view');"
        "const i = document.getElementById('r-image');"
        "return {width: s.width, height: s.height, view_width: v.clientWidth,"
        " view_height: v.clientHeight, natural: i.naturalWidth}"
    )
    return size


def zoom_is(page: Any, value: str) -> None:
    wait(page, lambda d: d.find_element(By.ID, "r-zoom").get_property("value") == value, 10)


def test_zoom_fits_the_width_or_the_page_or_a_share_of_print_size_and_is_kept(
    page, api, reader_chapter
):
    page.set_window_size(1366, 900)
    open_reader(page, api, reader_chapter, "#page=5")
    reader_ready(page, 5)
    zoom = page.find_element(By.ID, "r-zoom")
    fit_width = sheet_size(page)

    zoom.send_keys("Fit page")
    zoom_is(page, "page")
    fit_page = sheet_size(page)
    page.find_element(By.ID, "r-zoom-in").click()
    stepped = zoom.get_property("value")
    zoom.send_keys("200%")
    zoom_is(page, "2")
    doubled = sheet_size(page)
    page.find_element(By.ID, "r-view").click()
    press(page, "-")
    zoom_is(page, "1.75")
    page.refresh()
    reader_ready(page, 5)
    kept = page.find_element(By.ID, "r-zoom").get_property("value")

    # Fit width: the page as wide as the view, less its margins.
    assert abs(fit_width["width"] - (fit_width["view_width"] - 24)) <= 1
    assert abs(fit_page["height"] - (fit_page["view_height"] - 24)) <= 1
    assert fit_page["width"] < fit_width["width"]
    assert stepped not in ("width", "page")  # a step up from fit page: a share of print size
    # 200 %: twice the printed size, 96 CSS px an inch, the image at 150 DPI.
    assert abs(doubled["width"] - doubled["natural"] * 2 * 96 / 150) <= 1
    assert doubled["width"] > doubled["view_width"]  # wider than the view: it scrolls
    assert kept == "1.75"


def test_text_layer_selects_a_sentence_where_it_stands_and_copies_it(page, api, reader_chapter):
    page.set_window_size(1366, 900)
    open_reader(page, api, reader_chapter, "#page=37")
    reader_ready(page, 37)
    page.execute_cdp_cmd(
        "Browser.grantPermissions",
        {"origin": api.url, "permissions": ["clipboardReadWrite", "clipboardSanitizedWrite"]},
    )
    spans = page.find_elements(By.CSS_SELECTOR, "#r-layer .text-layer span")
    first = next(s for s in spans if s.get_attribute("textContent").strip() == "Salt")
    last = next(s for s in spans if s.get_attribute("textContent").strip() == "bay.")

    # A drag across the words, as a mouse selects them, from just inside the first word's left
    # edge to just inside the last one's right edge (spans are stretched: their drawn width, not
    # selenium's untransformed size).
    half = "return arguments[0].getBoundingClientRect().width / 2"
    (
        ActionChains(page)
        .move_to_element_with_offset(first, -page.execute_script(half, first) + 2, 0)
        .click_and_hold()
        .move_to_element_with_offset(last, page.execute_script(half, last) - 2, 0)
        .release()
        .perform()
    )
    selected = page.execute_script("return window.getSelection().toString()")
    ActionChains(page).key_down(Keys.CONTROL).send_keys("c").key_up(Keys.CONTROL).perform()
    copied = page.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "navigator.clipboard.readText().then(done, e => done('error: ' + e))"
    )
    image = page.find_element(By.ID, "r-image").rect
    word = first.rect

    assert " ".join(selected.split()) == READER_SENTENCE
    assert " ".join(copied.split()) == READER_SENTENCE
    # The word stands where it is printed: inside the page image, right of the margin.
    assert image["x"] < word["x"] < image["x"] + image["width"]
    assert image["y"] < word["y"] < image["y"] + image["height"] / 3


def test_find_highlights_every_hit_and_steps_through_them(page, api, reader_chapter):
    page.set_window_size(1366, 900)
    open_reader(page, api, reader_chapter, "#page=1")
    reader_ready(page, 1)

    press(page, Keys.CONTROL, "f")
    wait(page, lambda d: d.switch_to.active_element.get_attribute("id") == "r-find-input", 10)
    press(page, "Harbour", Keys.ENTER)
    wait(page, lambda d: text_of(d, "r-find-count") == "1 of 16", 30, "no count of the hits")
    reader_ready(page, 7)
    first = marks(page)
    press(page, Keys.ENTER)
    wait(page, lambda d: text_of(d, "r-find-count") == "2 of 16", 10)
    second = marks(page)
    press(page, Keys.ENTER)
    wait(page, lambda d: text_of(d, "r-find-count") == "3 of 16", 10)
    reader_ready(page, 14)
    third = marks(page)
    press(page, Keys.SHIFT, Keys.ENTER)
    wait(page, lambda d: text_of(d, "r-find-count") == "2 of 16", 10)
    reader_ready(page, 7)
    press(page, Keys.ESCAPE)
    wait(page, lambda d: not marks(d)["all"], 10, "the highlights stayed after find closed")

    # "harbour" twice on every seventh page: both hits of a page highlighted, one of them current.
    assert (first["all"], first["current"]) == (2, 0)
    assert (second["all"], second["current"]) == (2, 1)
    assert (third["all"], third["current"]) == (2, 0)
    assert first["words"] == ["harbour,", "harbour"]


def marks(page: Any) -> dict[str, Any]:
    """The find highlights on the page shown: how many, which is current, the words under them."""
    found: dict[str, Any] = page.execute_script("""
      const hits = [...document.querySelectorAll('#r-layer .hl-find')];
      const spans = [...document.querySelectorAll('#r-layer .text-layer span')];
      const under = hits.map(h => spans.find(s =>
        Math.abs(parseFloat(s.style.left) - parseFloat(h.style.left)) < 2 &&
        Math.abs(parseFloat(s.style.top) - parseFloat(h.style.top)) < 12));
      return {all: hits.length,
              current: hits.findIndex(h => h.classList.contains('hl-current')),
              words: under.map(s => s ? s.textContent.trim() : null)};
    """)
    return found


def test_search_opens_the_page_of_the_passage_with_it_highlighted(page, api, reader_chapter):
    page.set_window_size(1366, 900)
    sign_in(page, api.url + "/", reader_chapter.user)
    field = page.find_element(By.ID, "search-input")

    field.send_keys("salt wind bends the old pines toward the quiet bay", Keys.ENTER)
    wait(page, lambda d: d.find_elements(By.CSS_SELECTOR, "#search-results .result"), 60)
    first = page.find_element(By.CSS_SELECTOR, "#search-results .result")
    where = first.find_element(By.CSS_SELECTOR, ".result-where").text
    first.click()
    reader_ready(page, 37)
    wait(page, lambda d: d.find_elements(By.CSS_SELECTOR, "#r-layer .hl-passage"), 10)
    highlighted = page.execute_script("""
      const marks = [...document.querySelectorAll('#r-layer .hl-passage')];
      const spans = [...document.querySelectorAll('#r-layer .text-layer span')];
      return spans.filter(s => marks.some(m =>
        Math.abs(parseFloat(m.style.left) - parseFloat(s.style.left)) < 2 &&
        Math.abs(parseFloat(m.style.top) - parseFloat(s.style.top)) < 12))
        .map(s => s.textContent.trim()).join(' ');
    """)
    page.refresh()  # the passage stays highlighted: its id is in the URL
    reader_ready(page, 37)
    wait(page, lambda d: d.find_elements(By.CSS_SELECTOR, "#r-layer .hl-passage"), 10)

    assert where.startswith("The Lighthouse Ledger · page ")
    assert READER_SENTENCE in highlighted
    assert "passage=" in page.execute_script("return location.hash")


def test_outline_entries_and_internal_links_jump_to_their_pages(page, api, reader_chapter):
    page.set_window_size(1366, 900)
    open_reader(page, api, reader_chapter, "#page=1")
    reader_ready(page, 1)
    external = page.find_element(By.CSS_SELECTOR, "#r-layer a.page-link.external")
    external_link = (external.get_attribute("href"), external.get_attribute("target"),
                     external.get_attribute("rel"))  # fmt: skip

    page.find_element(By.CSS_SELECTOR, "#r-layer a.page-link[data-page='21']").click()
    reader_ready(page, 21)
    page.back()
    reader_ready(page, 1)
    page.find_element(By.ID, "r-tab-outline").click()
    entries = [e.text for e in page.find_elements(By.CSS_SELECTOR, "#r-outline .outline-entry")]
    page.find_element(By.CSS_SELECTOR, "#r-outline .outline-entry[data-page='41']").click()
    reader_ready(page, 41)
    current = page.find_element(By.CSS_SELECTOR, "#r-outline [aria-current=location]").text

    assert external_link == (READER_LINK, "_blank", "noopener noreferrer nofollow")
    assert entries == [
        "Contents\n1", "Section 1\n11", "Section 2\n21", "Section 3\n31", "Section 4\n41",
        "Section 5\n51",
    ]  # fmt: skip
    assert current == "Section 4\n41"
    assert page.execute_script("return location.hash") == "#page=41"


@contextmanager
def viewport(page: Any, width: int, height: int) -> Iterator[None]:
    """The page's viewport at exactly ``width`` x ``height`` CSS pixels, for this block."""
    page.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
    )
    try:
        yield
    finally:
        page.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


THUMBNAILS_REQUESTED = """
return performance.getEntriesByType('resource')
  .filter(e => e.name.includes('/thumb-')).map(e => e.name.split('/thumb-')[1].split('.')[0])
"""


def test_rail_of_a_5000_page_chapter_loads_only_the_thumbnails_in_view(page, api, huge_chapter):
    with viewport(page, 1366, 900):
        open_reader(page, api, huge_chapter, "#page=1")
        reader_ready_image(page, 1)
        rail = page.find_element(By.ID, "r-rail")
        wait(page, lambda d: len(thumbnails_drawn(d)) >= 3, 30, "no thumbnails drawn")
        at_top = thumbnails_drawn(page)
        for share in (0.1, 0.25, 0.5):  # three jumps down the rail, as a dragged scrollbar does
            page.execute_script(
                "arguments[0].scrollTop = arguments[0].scrollHeight * arguments[1]", rail, share
            )
            wait(page, lambda d, s=share: min(thumbnails_drawn(d), default=0) > 5000 * s - 10, 30)
        wait(page, lambda d: all_thumbnails_loaded(d), 30, "the thumbnails in view never loaded")
        middle = thumbnails_drawn(page)
        requested = page.execute_script(THUMBNAILS_REQUESTED)
        slots = page.execute_script("return document.querySelectorAll('#r-rail .thumb').length")
        height = page.execute_script("return document.getElementById('r-rail').scrollHeight")
        windows = page.execute_script(
            "return performance.getEntriesByType('resource').map(e => e.name)"
            ".filter(n => n.includes('/pages?offset='))"
            ".map(n => Number(new URL(n).searchParams.get('offset')))"
        )
        page.find_element(By.CSS_SELECTOR, f"#r-rail .thumb[data-page='{middle[3]}']").click()
        wait(
            page,
            lambda d: d.find_element(By.ID, "r-page").get_property("value") == str(middle[3]),
            10,
        )

    in_view = 900 // 172 + 1  # the rail's slots on a 900 px screen, at most
    assert at_top[0] == 1
    assert 2490 <= middle[0] <= 2510
    assert slots <= in_view + 2 * 2  # the slots in view and two either side, nothing else
    # A screenful (and its margins) at the top and at each of the three stops: not 5,000.
    assert len(requested) <= 4 * (in_view + 4)
    assert set(middle) <= {int(n) for n in requested}
    assert height >= 5000 * 170  # the rail scrolls the whole chapter's height
    assert all(offset % 100 == 0 for offset in windows)
    assert len(set(windows)) <= 8  # the windows of pages in view, not all 50
    assert page.execute_script("return location.hash") == f"#page={middle[3]}"


def thumbnails_drawn(page: Any) -> list[int]:
    numbers: list[int] = page.execute_script(
        "return [...document.querySelectorAll('#r-rail .thumb')]"
        ".filter(b => { const r = b.getBoundingClientRect();"
        " const v = document.getElementById('r-rail').getBoundingClientRect();"
        " return r.bottom > v.top && r.top < v.bottom; })"
        ".map(b => Number(b.dataset.page)).sort((a, b) => a - b)"
    )
    return numbers


def all_thumbnails_loaded(page: Any) -> bool:
    loaded: bool = page.execute_script(
        "const images = [...document.querySelectorAll('#r-rail .thumb img')];"
        "return images.length > 0 && images.every(i => i.complete && i.naturalWidth > 0)"
    )
    return loaded


def reader_ready_image(page: Any, number: int) -> None:
    """Page ``number``'s image drawn (a chapter without words: no text layer to wait for)."""
    wait(
        page,
        lambda d: d.execute_script(
            "const i = document.getElementById('r-image');"
            "return i.dataset.page === String(arguments[0]) && i.complete && i.naturalWidth > 0",
            number,
        ),
        60,
        f"page {number} not drawn",
    )


def test_reader_at_1366_and_at_400_wide_reads_by_keyboard_alone(
    page, api, reader_chapter, artifacts
):
    with viewport(page, 1366, 900):
        open_reader(page, api, reader_chapter, "#page=37")
        reader_ready(page, 37)
        wide = page.find_element(By.ID, "r-side").is_displayed()
        page.save_screenshot(str(artifacts / "reader-1366x900.png"))
    with viewport(page, 400, 800):
        page.refresh()
        reader_ready(page, 37)
        narrow_side = page.find_element(By.ID, "r-side").is_displayed()
        sizes = page.execute_script(
            "return {scroll: document.documentElement.scrollWidth, inner: window.innerWidth,"
            " sheet: document.getElementById('r-sheet').getBoundingClientRect().width,"
            " bar: [...document.querySelectorAll('.reader-bar > *')]"
            "   .map(e => e.getBoundingClientRect().right)}"
        )
        page.save_screenshot(str(artifacts / "reader-400x800.png"))
        # Keyboard only: the sidebar by its key, the outline by Tab and Enter, a page by key.
        press(page, "s")
        wait(page, lambda d: d.find_element(By.ID, "r-side").is_displayed(), 10)
        page.find_element(By.ID, "r-tab-outline").send_keys(Keys.ENTER)
        entry = page.find_element(By.CSS_SELECTOR, "#r-outline .outline-entry[data-page='51']")
        entry.send_keys(Keys.ENTER)
        reader_ready(page, 51)
        closed_after_pick = not page.find_element(By.ID, "r-side").is_displayed()
        page.find_element(By.ID, "r-view").send_keys(Keys.ARROW_RIGHT)
        reader_ready(page, 52)
        page.save_screenshot(str(artifacts / "reader-400x800-page-52.png"))

    print(f"screenshots of the reader: {artifacts}/reader-1366x900.png, reader-400x800.png")
    assert wide is True
    assert narrow_side is False  # a narrow window starts with the page, the sidebar closed
    assert sizes["scroll"] <= sizes["inner"]
    assert sizes["sheet"] <= sizes["inner"]
    assert max(sizes["bar"]) <= sizes["inner"] + 0.5
    assert closed_after_pick


def test_another_browsers_job_names_its_file_and_reads_its_chapter(page, api, reader_chapter):
    # The chapter was made through the API, not by this browser, which has never seen it.
    sign_in(page, api.url + "/", reader_chapter.user)
    row = f"#job-list li[data-job='{reader_chapter.job_id}']"
    wait(page, lambda d: d.find_elements(By.CSS_SELECTOR, row), 30, "the job was never listed")
    name = page.find_element(By.CSS_SELECTOR, f"{row} .job-name").text
    book = page.find_element(By.CSS_SELECTOR, f"{row} .job-book").text

    page.find_element(By.CSS_SELECTOR, f"{row} button[data-action=read]").click()
    reader_ready(page, 1)

    assert (name, book) == ("ledger.pdf", "book tides")
    assert page.execute_script("return location.pathname") == reader_chapter.path
    assert not page.find_element(By.ID, "error").is_displayed()


def test_a_deleted_chapters_url_says_so(page, api, reader_chapter):
    api.call(
        "DELETE", f"/api/v1/books/{reader_chapter.book_id}/chapters/{reader_chapter.chapter_id}"
    )

    open_reader(page, api, reader_chapter, "#page=3")
    wait(page, lambda d: text_of(d, "r-title") == "Chapter not found", 30)

    assert "it was deleted, or it is not yours" in text_of(page, "error")
    assert page.find_element(By.ID, "error").is_displayed()


def test_a_chapter_of_scans_says_once_at_the_top_what_ocr_did(page, api, scanned_chapter):
    open_reader(page, api, scanned_chapter, "#page=1")
    reader_ready_image(page, 1)

    notes = page.find_elements(By.CSS_SELECTOR, "#reader .r-notice:not([hidden])")
    text = text_of(page, "r-notice-text")
    page.find_element(By.ID, "r-notice-close").click()

    assert len(notes) == 1
    assert text.startswith("2 of 3 pages are scanned images: their text was read by OCR")
    assert "1 page has no text at all: find and selection skip it." in text
    assert not page.find_element(By.ID, "r-notice").is_displayed()
