"""service/retrieval/chunking.py: pages into passages. Generated chapters whose every word is
unique (``p3w17``: page 3, word 17), so a passage's words say exactly where it came from."""

from __future__ import annotations

import itertools
import re
import textwrap

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.retrieval.chunking import (
    Chunk,
    ChunkLimits,
    chunk_chapter,
    passage_header,
    passage_text,
)

LIMITS = ChunkLimits(max_tokens=120, target_tokens=100, overlap_tokens=12)


def word_tokens(text: str) -> list[tuple[int, int]]:
    """A tokenizer for tests: a word or a punctuation mark is a token (BERT-like)."""
    return [(m.start(), m.end()) for m in re.finditer(r"\w+|[^\w\s]", text)]


def sentence(page: int, first: int, length: int) -> str:
    words = [f"p{page}w{first + i}" for i in range(length)]
    return " ".join(words).capitalize() + "."


def page_text(page: int, paragraphs: int = 3, sentences: int = 5, length: int = 9) -> str:
    """PDF-like text: lines wrapped at 70 characters, no blank line between paragraphs, the
    last line of each paragraph short (its last two words)."""
    out, word = [], 0
    for _ in range(paragraphs):
        body = []
        for _ in range(sentences):
            body.append(sentence(page, word, length))
            word += length
        words = " ".join(body).split()
        out.append(textwrap.fill(" ".join(words[:-2]), 70) + "\n" + " ".join(words[-2:]) + "\n")
    return "".join(out)


def source_words(pages: list[tuple[int, str]]) -> list[str]:
    return " ".join(text for _, text in pages).split()


def merged(chunks: list[Chunk]) -> list[str]:
    """The chunks' words, each overlap counted once (words are unique: no false matches)."""
    out: list[str] = []
    for chunk in chunks:
        words = chunk.content.split()
        shared = next(
            (k for k in range(min(len(out), len(words)), 0, -1) if out[-k:] == words[:k]), 0
        )
        out.extend(words[shared:])
    return out


def shared_words(first: Chunk, second: Chunk) -> int:
    return len(merged([first]) + second.content.split()) - len(merged([first, second]))


@pytest.fixture
def pages() -> list[tuple[int, str]]:
    return [(number, page_text(number)) for number in range(3, 9)]


def test_every_word_of_every_page_is_in_the_chunks_in_order(pages):
    chunks = chunk_chapter(pages, word_tokens, limits=LIMITS)

    assert len(chunks) > 5
    assert merged(chunks) == source_words(pages)
    assert [chunk.chunk_index for chunk in chunks] == list(range(len(chunks)))


def test_every_word_is_covered_with_an_outline_and_headings_too(pages):
    pages[1] = (4, "4.1 Moorings\n" + pages[1][1])
    outline = [(1, "Harbours", 3), (2, "Moorings", 4)]

    for chunks in (
        chunk_chapter(pages, word_tokens, limits=LIMITS, outline=outline, title="Ports"),
        chunk_chapter(pages, word_tokens, limits=LIMITS, title="Ports"),
    ):
        assert merged(chunks) == source_words(pages)


def test_chunks_stay_within_the_limit_with_their_header(pages):
    chunks = chunk_chapter(pages, word_tokens, limits=LIMITS, title="A chapter on ports")

    for chunk in chunks:
        assert chunk.token_count == len(word_tokens(chunk.content))
        assert len(word_tokens(passage_text(chunk, "A chapter on ports"))) <= LIMITS.max_tokens
    assert max(chunk.token_count for chunk in chunks) > LIMITS.target_tokens * 0.8


def test_chunks_end_at_a_paragraph_end_when_one_is_in_reach():
    # Paragraphs of ~60 tokens: two fit in a passage, and a cut between them is in reach.
    pages = [(n, page_text(n, paragraphs=4, sentences=3, length=18)) for n in (1, 2)]
    ends = {f"p{n}w{54 * k - 1}." for n in (1, 2) for k in range(1, 5)}

    chunks = chunk_chapter(pages, word_tokens, limits=LIMITS)

    assert all(chunk.content.split()[-1] in ends for chunk in chunks)


def test_chunks_end_at_a_sentence_end_inside_a_long_paragraph():
    pages = [(1, page_text(1, paragraphs=1, sentences=40, length=9))]

    chunks = chunk_chapter(pages, word_tokens, limits=LIMITS)

    assert len(chunks) > 3
    assert all(chunk.content.endswith(".") for chunk in chunks)
    # and the overlap starts at a sentence's start
    assert all(chunk.content[0].isupper() for chunk in chunks)


def test_a_sentence_longer_than_a_passage_is_cut_between_words():
    pages = [(1, sentence(1, 0, 400))]

    chunks = chunk_chapter(pages, word_tokens, limits=LIMITS)

    words = set(source_words(pages)) | {"P1w0", "p1w399."}
    for chunk in chunks:
        assert set(chunk.content.split()) <= words  # no word was cut
        assert chunk.token_count <= LIMITS.max_tokens
    assert merged(chunks) == source_words(pages)


def test_a_word_longer_than_a_passage_is_cut_between_its_tokens():
    giant = "-".join(f"part{i}" for i in range(200))  # 399 tokens, no space
    pages = [(1, f"Before it. {giant} After it.")]

    chunks = chunk_chapter(pages, word_tokens, limits=LIMITS)

    assert all(chunk.token_count <= LIMITS.max_tokens for chunk in chunks)
    assert "".join(chunk.content for chunk in chunks).count("part199") == 1


def test_consecutive_chunks_overlap(pages):
    chunks = chunk_chapter(pages, word_tokens, limits=LIMITS)

    for first, second in itertools.pairwise(chunks):
        shared = shared_words(first, second)
        assert shared > 0
        assert (
            len(word_tokens(" ".join(second.content.split()[:shared]))) <= 2 * LIMITS.overlap_tokens
        )


def test_a_chunk_after_a_heading_starts_at_the_heading_without_overlap(pages):
    pages[2] = (5, "Moorings\n" + pages[2][1])

    chunks = chunk_chapter(pages, word_tokens, limits=LIMITS)

    starting = [chunk for chunk in chunks if chunk.content.startswith("Moorings")]
    assert len(starting) == 1
    before = chunks[starting[0].chunk_index - 1]
    assert shared_words(before, starting[0]) == 0
    assert "Moorings" not in before.content


def test_page_spans_are_the_pages_of_the_first_and_last_words(pages):
    chunks = chunk_chapter(pages, word_tokens, limits=LIMITS)

    def page_of(word: str) -> int:
        return int(re.match(r"p(\d+)w", word.lower()).group(1))

    for chunk in chunks:
        words = chunk.content.split()
        assert (chunk.page_start, chunk.page_end) == (page_of(words[0]), page_of(words[-1]))
    assert any(chunk.page_start != chunk.page_end for chunk in chunks)


def test_a_word_hyphenated_across_lines_and_pages_is_joined():
    pages = [
        (1, "Ships enter the har-\nbour at dawn and wait for the pi-"),
        (2, "lot to guide them in."),
    ]

    chunks = chunk_chapter(pages, word_tokens, limits=LIMITS)

    assert [chunk.content for chunk in chunks] == [
        "Ships enter the harbour at dawn and wait for the pilot to guide them in."
    ]
    assert (chunks[0].page_start, chunks[0].page_end) == (1, 2)


def test_whitespace_runs_are_normalised():
    pages = [(1, "Tabs\tand   spaces\r\nand\u00a0breaks  stay   words.\n\n\nNext paragraph here.")]

    (chunk,) = chunk_chapter(pages, word_tokens, limits=LIMITS)

    assert chunk.content == "Tabs and spaces and breaks stay words.\nNext paragraph here."


def test_sections_come_from_the_outline_deepest_entry_first():
    pages = [
        (10, "Harbours\n" + page_text(10, paragraphs=1)),
        (11, page_text(11, paragraphs=1) + "Moorings and anchors\n" + page_text(11, paragraphs=1)),
        (12, page_text(12, paragraphs=2)),
    ]
    outline = [
        (1, "Ports", 2),
        (1, "Harbours", 10),
        (2, "Moorings and anchors", 11),
        (1, "Later", 30),
    ]

    chunks = chunk_chapter(pages, word_tokens, limits=LIMITS, outline=outline)

    assert chunks[0].section == "Harbours"
    moorings = next(c for c in chunks if c.content.startswith("Moorings and anchors"))
    assert all(c.section == "Harbours" for c in chunks[: moorings.chunk_index])
    assert all(c.section == "Moorings and anchors" for c in chunks[moorings.chunk_index :])


def test_a_chapter_that_starts_inside_a_section_is_filed_under_it():
    pages = [(20, page_text(20, paragraphs=1))]
    outline = [(1, "Ports", 2), (2, "Harbours", 15), (1, "Later", 30)]

    chunks = chunk_chapter(pages, word_tokens, limits=LIMITS, outline=outline)

    assert {chunk.section for chunk in chunks} == {"Harbours"}


def test_sections_come_from_headings_without_an_outline():
    pages = [(1, page_text(1, paragraphs=1) + "2.1 Moorings\n" + page_text(1, paragraphs=2))]

    chunks = chunk_chapter(pages, word_tokens, limits=LIMITS)

    assert chunks[0].section is None
    assert chunks[-1].section == "2.1 Moorings"


def test_pages_without_text_make_no_chunks():
    assert chunk_chapter([(1, ""), (2, "  \n\t\n")], word_tokens) == []


def test_the_header_names_the_chapter_and_the_section():
    chunk = Chunk(0, "Ships wait.", 1, 1, "Moorings", 3)

    assert passage_text(chunk, "Ports") == "Ports — Moorings\nShips wait."
    assert passage_text(chunk, "Ports", header=False) == "Ships wait."
    assert passage_header(None, None) == ""
    assert passage_header("Ports", "ports") == "Ports\n"
    assert len(passage_header("x" * 500, None)) < 70


def test_limits_that_cannot_work_are_refused():
    with pytest.raises(ValueError, match="overlap_tokens"):
        ChunkLimits(max_tokens=100, target_tokens=90, overlap_tokens=50)


def test_real_tokenizer_passages_fit_the_models_window(counter, spec):
    title = "Chapter 7: Ports, harbours and the ships that use them"
    pages = [(n, page_text(n, paragraphs=4, sentences=6, length=14)) for n in range(1, 6)]
    accented = " ".join(f"Café{i} façade{i} naïve{i} résumé{i}." for i in range(80))
    pages.append((6, accented + " https://example.org/" + "a" * 400))
    limits = ChunkLimits(max_tokens=counter.budget("passage"))

    chunks = chunk_chapter(pages, counter.offsets, title=title, limits=limits)

    for chunk in chunks:
        passage = spec.prefix("passage") + passage_text(chunk, title)
        assert counter.count(passage) + counter.special_tokens <= spec.max_tokens
        assert chunk.token_count == counter.count(chunk.content)
    assert merged(chunks) == source_words(pages)


@settings(max_examples=60, deadline=None)
@given(
    layout=st.lists(
        st.lists(
            st.tuples(st.integers(1, 30), st.sampled_from([" ", "\n", ". ", ".\n", "\n\n"])),
            max_size=60,
        ),
        min_size=1,
        max_size=5,
    ),
    overlap=st.integers(2, 20),
)
def test_any_layout_is_covered_within_the_limit(layout, overlap):
    """Random pages: runs of unique words, split by spaces, line breaks, sentence ends, blank
    lines (some runs short enough to pass for headings)."""
    pages, word = [], 0
    for number, runs in enumerate(layout, start=1):
        parts = []
        for length, separator in runs:
            parts.append(" ".join(f"W{word + i}" for i in range(length)) + separator)
            word += length
        pages.append((number, "".join(parts)))
    limits = ChunkLimits(max_tokens=60, target_tokens=50, overlap_tokens=overlap)

    chunks = chunk_chapter(pages, word_tokens, limits=limits, title="Random")

    assert merged(chunks) == source_words(pages)
    assert all(len(word_tokens(passage_text(c, "Random"))) <= limits.max_tokens for c in chunks)


def test_short_sections_at_the_end_of_a_chapter_are_not_run_together():
    # The last three sections fit in one passage's budget together: each is still its own.
    sections = [("Alpha", 30), ("Beta", 12), ("Gamma", 12), ("Delta", 12)]
    pages = [
        (number, f"{title}\n" + " ".join(f"p{number}w{i}" for i in range(words)) + ".")
        for number, (title, words) in enumerate(sections, start=1)
    ]
    outline = [(1, title, number) for number, (title, _) in enumerate(sections, start=1)]

    chunks = chunk_chapter(pages, word_tokens, outline=outline, limits=LIMITS)

    assert [(chunk.section, chunk.page_start, chunk.page_end) for chunk in chunks] == [
        ("Alpha", 1, 1), ("Beta", 2, 2), ("Gamma", 3, 3), ("Delta", 4, 4),
    ]  # fmt: skip
