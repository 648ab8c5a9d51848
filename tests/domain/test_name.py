"""File names lose every escape sequence and invisible character; identifiers are checked."""

from __future__ import annotations

import pytest

from service.domain.chapter import chapter_title
from service.domain.name import (
    MAX_FILENAME_CHARS,
    MAX_TITLE_CHARS,
    clean_title,
    identifier_problem,
    printable_problem,
    safe_filename,
)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("a\x1b[31mred.pdf", "ared.pdf"),  # CSI: no "[31m" left behind
        ("a\x1b[1;38;5;196mb\x1b[0m.pdf", "ab.pdf"),
        ("\x9b31mc1.pdf", "c1.pdf"),  # the one-character C1 CSI
        ("t\x1b]0;owned\x07x.pdf", "tx.pdf"),  # OSC ended by BEL
        ("t\x1b]8;;http://evil\x1b\\link\x1b]8;;\x1b\\.pdf", "tlink.pdf"),  # OSC 8, ST ends
        ("osc\x9d0;title\x9c.pdf", "osc.pdf"),  # C1 OSC and ST
        ("unterminated\x1b]0;title.pdf", "unterminated"),
        ("reset\x1bc.pdf", "reset.pdf"),  # a two-byte ESC sequence
        ("nul\x00cr\rlf\n.pdf", "nulcrlf.pdf"),
        ("del\x7fc1\x85.pdf", "delc1.pdf"),
        ("evil\u202efdp.exe", "evilfdp.exe"),  # RIGHT-TO-LEFT OVERRIDE
        ("\u202a\u202b\u202c\u202d\u2066\u2067\u2068\u2069bidi.pdf", "bidi.pdf"),
        ("zero\u200b\u200c\u200d\u2060\ufeffwidth.pdf", "zerowidth.pdf"),
        ("lrm\u200e\u200fmarks.pdf", "lrmmarks.pdf"),
        ("line\u2028para\u2029.pdf", "linepara.pdf"),
        ("My\u00a0Book\u3000Two.pdf", "My Book Two.pdf"),  # other spaces: one plain space
        ("  spaced   out  .pdf", "spaced out .pdf"),
        ("../../etc/My Book.pdf", "My Book.pdf"),
        ("C:\\Users\\x\\thesis.pdf", "thesis.pdf"),
        ("..", "document.pdf"),
        ("\x1b[31m", "document.pdf"),
        ("", "document.pdf"),
        (None, "document.pdf"),
        ("書名 \u2013 Ünïcode.pdf", "書名 \u2013 Ünïcode.pdf"),
        ("cafe\u0301.pdf", "caf\u00e9.pdf"),  # NFC
    ],
)
def test_safe_filename_strips_escape_sequences_and_invisible_characters(raw, expected):
    assert safe_filename(raw) == expected


def test_safe_filename_is_cut_to_the_limit_keeping_the_extension():
    name = safe_filename("x" * 1000 + ".pdf")

    assert len(name) == MAX_FILENAME_CHARS
    assert name.endswith("x.pdf")


def test_safe_filename_without_extension_is_cut_to_the_limit():
    assert safe_filename("y" * 1000) == "y" * MAX_FILENAME_CHARS


@pytest.mark.parametrize(
    "value", ["book-1", "Book 1: the (long) one!", "书 名", "émile_zola-42", "[{}]"]
)
def test_printable_identifiers_pass(value):
    assert printable_problem(value) is None


@pytest.mark.parametrize(
    ("value", "code"),
    [
        ("b\x00", "0000"),
        ("b\r", "000D"),
        ("b\n", "000A"),
        ("b\t", "0009"),
        ("\x1b[31mb", "001B"),
        ("b\x85", "0085"),
        ("b\u202e", "202E"),
        ("b\u2066", "2066"),
        ("b\u200b", "200B"),
        ("b\ufeff", "FEFF"),
        ("b\u00a0", "00A0"),
        ("b\u2028", "2028"),
    ],
)
def test_identifier_with_an_invisible_character_names_it(value, code):
    assert printable_problem(value) == f"printable characters only: U+{code} is not allowed"
    assert identifier_problem(value) == printable_problem(value)


@pytest.mark.parametrize("value", ["my book/2", "/", "a/", ".", ".."])
def test_identifier_that_is_not_one_url_path_segment_is_refused(value):
    assert printable_problem(value) is None
    assert "is not allowed: the id is part of the chapter's URL" in (
        identifier_problem(value) or ""
    )


@pytest.mark.parametrize("value", ["a.b", "...", "a%2Fb", "a?b#c", "a\\b", "book-1"])
def test_identifier_with_dots_or_url_characters_that_encode_is_accepted(value):
    assert identifier_problem(value) is None


@pytest.mark.parametrize("value", [" ", "   "])
def test_blank_identifier_is_refused(value):
    assert identifier_problem(value) == "must not be blank: the id is part of the chapter's URL"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("The\x00 Sea", "The Sea"),
        ("Line one\nline two\r\n", "Line one line two"),
        ("tab\tstop", "tab stop"),
        ("evil\u202efdp.exe", "evilfdp.exe"),  # RIGHT-TO-LEFT OVERRIDE
        ("\u2066isolated\u2069 zero\u200bwidth", "isolated zerowidth"),
        ("red \x1b[31mtitle\x1b[0m", "red title"),
        ("para\u2029graph\u2028line", "para graph line"),
        ("  many   spaces\u00a0here ", "many spaces here"),
        ("\u202e\x00\n", None),
        ("", None),
        (None, None),
        ("海と山 \u2013 Ünïcode", "海と山 \u2013 Ünïcode"),
    ],
)
def test_clean_title_keeps_only_text(raw, expected):
    assert clean_title(raw) == expected


def test_clean_title_is_cut_to_the_limit():
    assert clean_title("t" * 1000) == "t" * MAX_TITLE_CHARS


def test_chapter_title_from_pdf_metadata_is_cleaned_and_falls_back_to_the_file_name():
    assert chapter_title(None, "Right\u202eto left\x00", "f.pdf") == "Rightto left"
    assert chapter_title("\u202e\n", "\x00", "my file.pdf") == "my file"
    assert chapter_title("Asked\nfor", "PDF title", "f.pdf") == "Asked for"
