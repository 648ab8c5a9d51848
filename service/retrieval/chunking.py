"""A chapter's pages into passages to embed and to search: token-aware, with overlap. Pure.

    chunks = chunk_chapter(pages, counter.offsets, outline=toc, title=title,
                           limits=ChunkLimits(max_tokens=counter.budget("passage")))
    texts = [passage_text(chunk, title) for chunk in chunks]       # what is embedded

Passages are counted in the model's own tokens (``token_offsets`` is its tokenizer; tests pass a
word splitter). Each is about ``target_tokens`` long (160 by default, measured: ``ChunkLimits``)
and never over ``max_tokens`` with its header (``passage_text``), so prefix + header + content +
special tokens fit the model's window and the model never silently drops a passage's end.

Where a passage ends: before the first heading (an outline entry's title, or a detected heading)
past an eighth of the target, however short it is then; else at the best kind of place between
half the target and the limit (a paragraph's end, then a sentence's end, then between two words),
the one nearest the target among equals. A passage never ends inside a word (unless one "word"
alone is over the limit, as a long URL can be in some tokenizers: it is then cut between
tokens). The next passage starts ``overlap_tokens`` before the end (at a sentence start if one
is near), so a sentence cut between two passages is whole in one of them; except after a
heading: a new section starts clean, and its passages are filed under it.

A passage may span pages (``page_start``/``page_end``). Its ``section`` is the outline entry it
starts under (the deepest, located in the page's text by its title; at the page's top if the
title is not found), else the last heading detected in the text (``layout.py``), else None.

Every word of every page is in some passage, in order (tests/retrieval/test_chunking.py).
"""

from __future__ import annotations

import bisect
import itertools
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

import msgspec

from service.retrieval.layout import Kind, Paragraph, ends_sentence, paragraphs

T = TypeVar("T")
TokenOffsets = Callable[[str], Sequence[tuple[int, int]]]
Outline = Sequence[tuple[int, str, int]]  # (level, title, page number): PyMuPDF's get_toc()

# Measured by bench/index.py on bench/eval/retrieval.json (MiniLM, 77 questions, MRR@10, 160-token
# passages): the header (chapter title + section) before each passage raised vector search from
# 0.51 to 0.56 and hybrid search from 0.58 to 0.63 (at 120 tokens: 0.55 -> 0.59, 0.59 -> 0.64).
HEADER = True
_HEADER_CHARS = 60  # each of title and section: ~15 tokens in English, ~70 at worst (CJK)
_WORD = re.compile(r"\S+")
_SENTENCE_START = re.compile(r"(?<=[.!?])[\"')\]]*\s+(?=[\"'(\[]?[A-Z0-9])")
_WHERE_TO_CUT = {"word": 1, "sentence": 2, "paragraph": 3, "heading": 4}


class Chunk(msgspec.Struct, frozen=True):
    """One passage of a chapter; ``token_count`` is of ``content`` alone, without specials."""

    chunk_index: int
    content: str
    page_start: int
    page_end: int
    section: str | None
    token_count: int


@dataclass(frozen=True, slots=True)
class ChunkLimits:
    """``max_tokens``: what header + content may have (``TokenCounter.budget("passage")``: the
    model's window less its special tokens and its passage prefix). ``target_tokens``: the
    length aimed at. ``overlap_tokens``: how much of a passage's end the next one repeats.

    Target measured (bench/index.py, MiniLM with headers, hybrid MRR@10 on 77 questions):
    120 tokens 0.64, 160 tokens 0.63, 210 tokens 0.60 (vector alone 0.59, 0.56, 0.57). MiniLM
    was trained on 128-token inputs: longer passages blur. 160 keeps nearly all of 120's
    quality with 12% fewer passages to embed and store (1,894 against 2,149 for 407 pages).
    """

    max_tokens: int = 254
    target_tokens: int = 160
    overlap_tokens: int = 24  # 15%

    def __post_init__(self) -> None:
        if not 0 < self.overlap_tokens < self.target_tokens // 2 <= self.max_tokens // 2:
            raise ValueError("need 0 < overlap_tokens < target_tokens / 2 <= max_tokens / 2")


def passage_header(title: str | None, section: str | None) -> str:
    """``"<chapter title> — <section>\\n"`` (either may be missing), or ''."""
    parts = [_clip(part) for part in (title, section) if part and part.strip()]
    if len(parts) == 2 and parts[0].lower() == parts[1].lower():
        parts.pop()
    return " — ".join(parts) + "\n" if parts else ""


def passage_text(chunk: Chunk, chapter_title: str | None, *, header: bool = HEADER) -> str:
    """What is embedded for ``chunk``: its header (chapter title and section), then its content.

    Pass the same ``header`` (and title) as to ``chunk_chapter``, which left room for it.
    """
    if not header:
        return chunk.content
    return passage_header(chapter_title, chunk.section) + chunk.content


def chunk_chapter(
    pages: Sequence[tuple[int, str]],
    token_offsets: TokenOffsets,
    *,
    outline: Outline | None = None,
    title: str | None = None,
    header: bool = HEADER,
    limits: ChunkLimits = ChunkLimits(),
) -> list[Chunk]:
    """The chapter's passages, in order. ``pages``: ``(page number, extracted text)``."""
    text, page_map, units = _assemble(pages)
    if not units:
        return []
    section_starts = _sections(text, page_map, units, outline)
    sections = _Lookup(section_starts)
    spans = _words(text, units, [start for start, _ in section_starts], token_offsets, limits)
    header_tokens: dict[str | None, int] = {}

    def budget(section: str | None) -> int:
        if section not in header_tokens:
            head = passage_header(title, section) if header else ""
            header_tokens[section] = len(token_offsets(head)) if head else 0
        return max(limits.max_tokens - header_tokens[section], 1)

    chunks: list[Chunk] = []
    start = 0
    while start < len(spans.starts):
        section = sections.at(spans.starts[start])
        end = spans.end_for(start, limits, budget(section))
        content = text[spans.starts[start] : spans.ends[end - 1]]
        count = len(token_offsets(content))
        while count > budget(section) and end > start + 1:  # a tokenizer not additive by word
            end -= 1
            content = text[spans.starts[start] : spans.ends[end - 1]]
            count = len(token_offsets(content))
        chunks.append(
            Chunk(
                chunk_index=len(chunks),
                content=content,
                page_start=page_map.page(spans.starts[start]),
                page_end=page_map.page(spans.ends[end - 1] - 1),
                section=section,
                token_count=count,
            )
        )
        if end == len(spans.starts):
            break
        start = spans.next_start(start, end, limits)
    return chunks


class _Lookup(Generic[T]):
    """Values placed at character positions (sorted): the one in force at a position."""

    def __init__(self, entries: Sequence[tuple[int, T]]) -> None:
        self.positions = [position for position, _ in entries]
        self.values = [value for _, value in entries]

    def at(self, position: int) -> T | None:
        index = bisect.bisect_right(self.positions, position) - 1
        return self.values[index] if index >= 0 else None


class _PageMap(_Lookup[int]):
    def page(self, position: int) -> int:
        return self.at(position) or self.values[0]


class _Unit(msgspec.Struct):
    """A paragraph placed in the chapter's text."""

    start: int
    end: int
    page: int
    kind: Kind


def _assemble(pages: Sequence[tuple[int, str]]) -> tuple[str, _PageMap, list[_Unit]]:
    """The chapter as one text: paragraphs joined by newlines, a sentence cut by a page break
    joined by a space (a word hyphenated across it, by nothing)."""
    parts: list[str] = []
    size = 0
    page_starts: list[tuple[int, int]] = []
    units: list[_Unit] = []
    per_page = paragraphs([page_text for _, page_text in pages])
    for (number, _), page_paragraphs in zip(pages, per_page, strict=True):
        for index, paragraph in enumerate(page_paragraphs):
            joiner = "\n"
            previous = units[-1] if units else None
            if index == 0 and previous is not None and _continues(parts[-1], paragraph):
                if parts[-1].endswith("-"):
                    parts[-1] = parts[-1][:-1]
                    size -= 1
                    previous.end -= 1
                    joiner = ""
                else:
                    joiner = " "
            if previous is None:
                joiner = ""
            if index == 0:
                page_starts.append((size + len(joiner), number))
            if joiner == "\n" or previous is None:
                units.append(_Unit(size + len(joiner), 0, number, paragraph.kind))
            parts.append(joiner + paragraph.text if joiner else paragraph.text)
            size += len(joiner) + len(paragraph.text)
            units[-1].end = size
    return "".join(parts), _PageMap(page_starts), units


def _continues(previous_text: str, paragraph: Paragraph) -> bool:
    return (
        paragraph.kind == Kind.body
        and paragraph.text[:1].islower()
        and not ends_sentence(previous_text)
    )


class _Spans:
    """The chapter's words: where each starts and ends, how many tokens precede it, and how good
    a place to cut its start is."""

    def __init__(self) -> None:
        self.starts: list[int] = []
        self.ends: list[int] = []
        self.tokens: list[int] = []  # tokens before the word; one more entry: the total
        self.strength: list[int] = []

    def end_for(self, start: int, limits: ChunkLimits, budget: int) -> int:
        """Index one past the last word of the passage that starts at word ``start``."""
        base = self.tokens[start]
        last = len(self.starts)
        if self.tokens[last] - base <= budget:
            high = last  # the rest fits: it still ends at the next section (the sentinel: last)
        else:
            high = bisect.bisect_right(self.tokens, base + budget, lo=start + 1) - 1
            if high <= start:
                return start + 1  # one word over the limit: _words cut such words already
        # A passage does not run into the next section: it ends before the first heading past
        # a few tokens in, however short it is then.
        soon = max(start + 1, bisect.bisect_left(self.tokens, base + limits.target_tokens // 8))
        for end in range(soon, high + 1):
            if self.strength[end] >= _WHERE_TO_CUT["heading"]:
                return end
        low = max(start + 1, bisect.bisect_left(self.tokens, base + limits.target_tokens // 2))
        return max(range(low, high + 1) or [high], key=lambda e: self._score(e, base, limits))

    def next_start(self, start: int, end: int, limits: ChunkLimits) -> int:
        """Where the passage after ``start:end`` starts: ``overlap_tokens`` back, not over a
        heading."""
        if self.strength[end] >= _WHERE_TO_CUT["heading"]:
            return end
        goal = self.tokens[end] - limits.overlap_tokens
        low = bisect.bisect_left(self.tokens, goal - limits.overlap_tokens // 2, lo=start + 1)
        high = bisect.bisect_right(self.tokens, goal + limits.overlap_tokens // 2, hi=end) - 1
        if high < low or low >= end:
            return end
        return max(
            range(low, high + 1),
            key=lambda s: (min(self.strength[s], 2), -abs(self.tokens[s] - goal)),
        )

    def _score(self, end: int, base: int, limits: ChunkLimits) -> tuple[int, int]:
        strength = self.strength[end] if end < len(self.starts) else _WHERE_TO_CUT["heading"]
        return strength, -abs(self.tokens[end] - base - limits.target_tokens)


def _words(
    text: str,
    units: list[_Unit],
    section_starts: list[int],
    token_offsets: TokenOffsets,
    limits: ChunkLimits,
) -> _Spans:
    token_starts = [start for start, _ in token_offsets(text)]
    longest = limits.max_tokens // 2
    cut = dict.fromkeys((m.end() for m in _SENTENCE_START.finditer(text)), "sentence")
    for unit in units:
        cut[unit.start] = "heading" if unit.kind == Kind.heading else "paragraph"
    cut.update(dict.fromkeys(section_starts, "heading"))
    spans = _Spans()
    for match in _WORD.finditer(text):
        first = bisect.bisect_left(token_starts, match.start())
        last = bisect.bisect_left(token_starts, match.end())
        # A "word" of more tokens than half a passage: pieces between tokens (never otherwise).
        pieces = [token_starts[i] for i in range(first + longest, last, longest)]
        bounds = [match.start(), *pieces, match.end()]
        for piece, (begin, finish) in enumerate(itertools.pairwise(bounds)):
            spans.starts.append(begin)
            spans.ends.append(finish)
            spans.tokens.append(first + piece * longest)
            spans.strength.append(_WHERE_TO_CUT[cut.get(begin, "word")] if piece == 0 else 0)
    spans.tokens.append(len(token_starts))
    spans.strength.append(_WHERE_TO_CUT["heading"])
    return spans


def _sections(
    text: str, page_map: _PageMap, units: list[_Unit], outline: Outline | None
) -> list[tuple[int, str]]:
    """Where each section starts, in order: the outline's entries found in the text, else the
    headings ``layout`` detected."""
    if not outline:
        return [
            (unit.start, text[unit.start : unit.end]) for unit in units if unit.kind == Kind.heading
        ]
    first_page = page_map.values[0]
    entries: list[tuple[int, str]] = []
    before = [entry for entry in outline if entry[2] < first_page]
    if before:
        entries.append((0, before[-1][1].strip()))
    bounds = dict(zip(page_map.values, [*page_map.positions[1:], len(text)], strict=True))
    starts = dict(zip(page_map.values, page_map.positions, strict=True))
    search_from: dict[int, int] = {}
    for _, title, page in outline:
        if page not in starts or not title.strip():
            continue
        low = search_from.get(page, starts[page])
        position = _find_title(title, text, units, low, bounds[page])
        search_from[page] = position = low if position is None else position
        entries.append((position, title.strip()))
    entries.sort(key=lambda entry: entry[0])  # stable: the later (deeper) entry wins a tie
    return entries


def _find_title(title: str, text: str, units: list[_Unit], low: int, high: int) -> int | None:
    """The start of the first paragraph in ``text[low:high]`` that holds ``title`` (running
    heads skipped: they repeat the chapter's title on every page)."""
    pattern = re.compile(r"\s+".join(re.escape(word) for word in title.split()), re.IGNORECASE)
    first = bisect.bisect_right([unit.start for unit in units], low) - 1
    for unit in units[max(first, 0) :]:
        if unit.start >= high:
            break
        if unit.kind != Kind.furniture and pattern.search(text, max(unit.start, low), unit.end):
            return max(unit.start, low)
    return None


def _clip(text: str) -> str:
    text = " ".join(text.split())
    if len(text) <= _HEADER_CHARS:
        return text
    return text[:_HEADER_CHARS].rsplit(" ", 1)[0] + "…"
