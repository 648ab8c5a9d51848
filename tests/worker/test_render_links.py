"""A page's links, read by the renderer: internal ones to a page, external ones to a URI a reader
may open, boxed in the pixels of the page image as its words are (a turned page included), and
sent back over msgpack like the rest of the page."""

from __future__ import annotations

import math

import msgspec
import pymupdf
import pytest

from tests.support.pdfs import READER_LINK, reader_pdf
from worker.rendering.page import (
    MAX_LINKS,
    PageLink,
    RenderedPage,
    RenderOptions,
    clean_uri,
    open_document,
    quiet_mupdf,
    render_page,
)

quiet_mupdf()


@pytest.fixture
def render(tmp_path):
    """``render(pdf_bytes, index=0, **options)``: one page of the PDF, rendered."""

    def run(data: bytes, index: int = 0, **options) -> RenderedPage:
        path = tmp_path / "doc.pdf"
        path.write_bytes(data)
        doc, _ = open_document(str(path))
        try:
            return render_page(doc, index, RenderOptions(**options))
        finally:
            doc.close()

    return run


def _pdf(build) -> bytes:
    doc = pymupdf.open()
    for _ in range(3):
        doc.new_page(width=300, height=400)
    build(doc)
    data: bytes = doc.tobytes()
    doc.close()
    return data


def _link(on, rect, **target):
    """A link on page ``on``: ``uri=...``, or ``page=`` a 0-based page index (PyMuPDF's)."""
    kind = pymupdf.LINK_URI if "uri" in target else pymupdf.LINK_GOTO
    on.insert_link({"kind": kind, "from": pymupdf.Rect(rect), **target})


def test_internal_and_external_links_are_kept_with_their_targets(render):
    page = render(reader_pdf(60), dpi=72)

    internal = [link for link in page.links if link.page is not None]
    external = [link for link in page.links if link.uri is not None]

    assert [link.page for link in internal] == [11, 21, 31, 41, 51]
    assert [link.uri for link in external] == [READER_LINK]
    assert all(link.uri is None for link in internal)
    assert all(link.page is None for link in external)


def test_link_boxes_are_in_the_image_pixels_like_the_words(render):
    def build(doc):
        _link(doc[0], (30, 40, 150, 55), page=2)

    at_72 = render(_pdf(build), dpi=72)
    at_150 = render(_pdf(build), dpi=150)

    assert [(k.x0, k.y0, k.x1, k.y1) for k in at_72.links] == [(30, 40, 150, 55)]
    (link,) = at_150.links
    scale = 150 / 72
    # Rounded outward, as words are.
    assert (link.x0, link.y0) == (math.floor(30 * scale), math.floor(40 * scale))
    assert (link.x1, link.y1) == (math.ceil(150 * scale), math.ceil(55 * scale))
    assert link.x1 <= at_150.words_width
    assert link.page == 3


def test_link_on_a_turned_page_is_boxed_where_the_image_shows_it(render):
    def build(doc):
        doc[0].set_rotation(90)
        _link(doc[0], (30, 40, 150, 55), page=1)  # unrotated coordinates, in the 300x400 page

    page = render(_pdf(build), dpi=72)

    # Turned 90 degrees clockwise: the image is 400x300, x = 400 - y, y = x.
    assert (page.words_width, page.words_height) == (400, 300)
    assert [(k.x0, k.y0, k.x1, k.y1, k.page) for k in page.links] == [(345, 30, 360, 150, 2)]


@pytest.mark.parametrize(
    "uri",
    ["javascript:alert(1)", "file:///etc/passwd", "data:text/html,<b>x</b>", "ftp://x/y", ""],
)
def test_links_a_reader_must_not_open_are_left_out(render, uri):
    def build(doc):
        _link(doc[0], (10, 10, 100, 30), uri=uri)
        _link(doc[0], (10, 50, 100, 70), uri="mailto:keeper@example.org")

    page = render(_pdf(build), dpi=72)

    assert [link.uri for link in page.links] == ["mailto:keeper@example.org"]


def test_uris_are_cleaned():
    assert clean_uri("  HTTPS://example.org/a  ") == "HTTPS://example.org/a"
    assert clean_uri("https://example.org/a b") is None
    assert clean_uri("https://example.org/\x00") is None
    assert clean_uri("https://example.org/" + "a" * 3000) is None
    assert clean_uri(None) is None


def test_a_page_with_too_many_links_keeps_the_first_ones(render):
    def build(doc):
        for n in range(MAX_LINKS + 20):
            _link(doc[0], (1, 1 + (n % 390), 20, 2 + (n % 390)), page=1)

    page = render(_pdf(build), dpi=72)

    assert len(page.links) == MAX_LINKS


def test_links_cross_the_process_boundary_as_msgpack(render):
    page = render(reader_pdf(12), dpi=72)

    again = msgspec.msgpack.decode(msgspec.msgpack.encode(page), type=RenderedPage)

    assert again.links == page.links
    assert isinstance(again.links[0], PageLink)
    assert again.links[0].page == 11
