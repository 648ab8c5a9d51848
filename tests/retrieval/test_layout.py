"""service/retrieval/layout.py: extracted page text into paragraphs, headings and furniture."""

from __future__ import annotations

import pytest

from service.retrieval.layout import Kind, normalize, paragraphs

BODY = (
    "The harbour master keeps a ledger of every vessel that enters the port during\n"
    "the winter months, noting its cargo, its crew and the hour of its arrival.\n"
    "Ledgers are kept for ten years.\n"
)


def kinds(page: str) -> list[tuple[str, str]]:
    return [(p.kind.name, p.text) for p in paragraphs([page])[0]]


def test_hyphenated_line_breaks_are_joined_before_a_lowercase_letter():
    assert normalize("an exam-\nple of it") == "an example of it"
    assert normalize("an exam- \n  ple") == "an example"
    assert normalize("the X-\nRay machine") == "the X-\nRay machine"
    assert normalize("pages 12-\n14") == "pages 12-\n14"


def test_ligatures_soft_hyphens_and_odd_spaces_are_normalised():
    assert normalize("ﬁne e\u00adxample\u00a0here\r\nnext") == "fine example here\nnext"


@pytest.mark.parametrize(
    "heading",
    ["3.5.7 Word Splitting", "Introduction", "1.2 What is a shell?", "Appendix B Indexes"],
)
def test_a_short_title_line_after_a_sentence_is_a_heading(heading):
    page = BODY + heading + "\n" + BODY

    assert ("heading", heading) in kinds(page)


@pytest.mark.parametrize(
    "line",
    [
        "Ledgers are closed.",  # ends a sentence
        "the next harbour",  # lowercase
        "What is a shell?",  # a question, not numbered
        "One Two Three Four Five Six Seven Eight Nine Ten Eleven",  # too many words
    ],
)
def test_lines_that_are_not_headings(line):
    page = BODY + line + "\n" + BODY

    assert all(kind != "heading" for kind, _ in kinds(page))


def test_a_short_line_mid_sentence_is_not_a_heading():
    page = "The harbour master keeps a ledger of every vessel that enters the\nPort Authority\n"

    assert all(kind == "body" for kind, _ in kinds(page + BODY))


def test_a_short_line_followed_by_a_lowercase_line_is_not_a_heading():
    page = BODY + "For example\nthe ledger of 1901 lists forty ships.\n"

    assert ("heading", "For example") not in kinds(page)


def test_a_lone_section_number_joins_its_title():
    page = BODY + "2.3\nModifying argument descriptions\n" + BODY

    assert ("heading", "2.3 Modifying argument descriptions") in kinds(page)


def test_a_paragraph_ends_at_a_short_line_that_ends_a_sentence():
    result = kinds(BODY + BODY)

    assert [kind for kind, _ in result] == ["body", "body"]
    assert result[0][1].endswith("ten years.")
    assert "\n" not in result[0][1]


def test_a_full_line_ending_a_sentence_does_not_end_the_paragraph():
    page = (
        "The harbour master keeps a ledger of every vessel that enters the port.\n"
        "The ledger notes its cargo, its crew and the hour of its arrival here.\n"
        "Ledgers are kept.\n"
    )

    assert len(kinds(page)) == 1


def test_running_heads_and_page_numbers_are_furniture():
    pages = [f"Chapter 3: Harbours\n{n}\n{BODY}" for n in (11, 12, 13)]

    result = paragraphs(pages)

    for page, number in zip(result, (11, 12, 13), strict=True):
        assert page[0] == page[0].__class__("Chapter 3: Harbours", Kind.furniture)
        assert page[1].kind == Kind.furniture
        assert page[1].text == str(number)
        assert page[2].kind == Kind.body


def test_a_head_on_two_pages_only_is_not_furniture():
    pages = [f"Harbours\n{BODY}" for _ in range(2)]

    assert [page[0].kind for page in paragraphs(pages)] == [Kind.heading, Kind.heading]
