"""service/domain/words.py: the compact form of a page's positioned words round-trips, refuses
what it did not write, and is a fraction of the JSON a naive form would take."""

from __future__ import annotations

import json

import pymupdf
import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.domain.words import Word, decode_words, encode_words, normalise, text_of
from tests.support.scans import prose
from worker.rendering.page import RenderOptions, render_page

WORDS = [
    Word(10, 20, 50, 40, "Hello", 0, 0),
    Word(55, 20, 90, 40, "wörld", 0, 0),
    Word(10, 45, 30, 60, "x", 0, 1),
    Word(300, 5, 320, 15, "漢字", 4, 7),  # MuPDF numbers image blocks too: 4, not 1
]


def test_words_round_trip_numbered_densely():
    data = encode_words(WORDS)

    assert decode_words(data) == normalise(WORDS)
    assert normalise(WORDS)[-1] == Word(300, 5, 320, 15, "漢字", 1, 0)


def test_no_words_round_trip():
    assert decode_words(encode_words([])) == []
    assert decode_words(b"") == []


def test_text_of_words_is_lines_of_words_as_mupdf_writes_them():
    assert text_of(normalise(WORDS)) == "Hello wörld\nx\n漢字\n"


words_strategy = st.lists(
    st.builds(
        lambda x, y, w, h, text, block, line: Word(x, y, x + w, y + h, text, block, line),
        st.integers(0, 200_000),
        st.integers(0, 200_000),
        st.integers(0, 5_000),
        st.integers(0, 5_000),
        st.text(max_size=12),  # any text: spaces, newlines, NULs, astral characters, ""
        st.integers(0, 3),
        st.integers(0, 3),
    ),
    max_size=60,
)


@given(words_strategy)
def test_any_words_round_trip(words):
    assert decode_words(encode_words(words)) == normalise(words)


@given(words_strategy.filter(bool), st.data())
def test_a_truncated_blob_is_refused(words, data):
    blob = encode_words(words)
    cut = data.draw(st.integers(1, len(blob) - 1))

    with pytest.raises(ValueError):
        decode_words(blob[:cut])


@given(st.binary(max_size=200))
def test_arbitrary_bytes_decode_to_words_or_raise_value_error(blob):
    try:
        words = decode_words(blob)
    except ValueError:
        return
    assert all(isinstance(word, Word) and word.x1 >= word.x0 for word in words)
    assert decode_words(encode_words(words)) == words


def test_a_corrupt_count_is_refused_without_allocating_it():
    # Version 1, then a block count of 2**62: refused before any list of that size is made.
    blob = bytes([1]) + bytes([0xFF] * 8 + [0x3F])

    with pytest.raises(ValueError):
        decode_words(blob)


def test_a_box_that_is_not_one_is_refused():
    with pytest.raises(ValueError):
        encode_words([Word(10, 10, 5, 20, "back", 0, 0)])


def dense_page() -> bytes:
    """A page of about 600 words of 8.5 pt prose, as a dense book page has."""
    doc = pymupdf.open()
    page = doc.new_page()
    left = page.insert_textbox(pymupdf.Rect(50, 50, 545, 800), prose(600, 7), fontsize=8.5)
    assert left >= 0
    data: bytes = doc.tobytes()
    doc.close()
    return data


def test_a_dense_page_is_a_fraction_of_its_json(capsys):
    with pymupdf.open(stream=dense_page(), filetype="pdf") as doc:
        page = render_page(doc, 0, RenderOptions(render_images=False, ocr="off"))
    words = decode_words(page.words)
    as_dicts = json.dumps(
        [
            {"x0": w.x0, "y0": w.y0, "x1": w.x1, "y1": w.y1, "text": w.text}
            | {"block": w.block, "line": w.line}
            for w in words
        ]
    ).encode()
    as_lists = json.dumps([list(w) for w in words]).encode()

    with capsys.disabled():
        print(
            f"\n{len(words)} words: compact {len(page.words)} B "
            f"({len(page.words) / len(words):.1f} B/word), JSON dicts {len(as_dicts)} B, "
            f"JSON lists {len(as_lists)} B"
        )
    assert len(words) >= 580
    assert [w.text for w in words] == page.text.split()
    assert len(page.words) < len(as_lists) / 3 < len(as_dicts) / 6
