"""From a PDF page's extracted text to paragraphs: the chunker's units. Pure.

``page.get_text()`` gives one line per printed line and no blank line between paragraphs, words
hyphenated at line ends, ligatures (``ﬁ``), running heads and page numbers. This module:

- normalises the text (NFKC: ``ﬁ`` -> ``fi``, no-break spaces; soft hyphens dropped) and joins
  words hyphenated across a line break (``exam-\\nple`` -> ``example``; only before a lowercase
  letter, so ``X-\\nRay`` stays);
- marks page furniture: a bare page number, or a line among the first or last two of a page that
  repeats (digits aside) on three pages or more (running heads). It stays in the text (every
  page's words are kept) but as a paragraph of its own, never a heading, never mid-sentence;
- finds headings: a short line (at most 10 words, 80 characters) that starts with a capital or a
  section number, does not end like a sentence (``.,;:!?``; a numbered title may end with
  ``?``: ``1.2 What is a shell?``), follows the end of a sentence, a heading, furniture or the
  top of the page, and is not followed by a line that starts in lowercase (a sentence going
  on). A section number alone on its line (``2.3``, not ``3``: that is more often a page
  number) joins the next line when that looks like a title;
- starts a new paragraph at a blank line, a heading, furniture, or after a line that ends a
  sentence and stops short of the page's usual line length (the last line of a paragraph).

Lines of one paragraph are joined with one space; whitespace runs become one space.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

MAX_HEADING_WORDS = 10
MAX_HEADING_CHARS = 80
_FURNITURE_PAGES = 3  # a line on this many pages is a running head, not content structure
_SHORT_LINE = 0.75  # of the page's usual line length: a paragraph's last line stops short

_HYPHENATED = re.compile(r"([^\W\d_])-[ \t]*\n[ \t]*(?=[^\W\d_])")
_SPACES = re.compile(r"\s+")
_SECTION_NUMBER = re.compile(r"^(?:\d+(?:\.\d+)*\.?|[A-Z]\.\d+(?:\.\d+)*\.?)$")
_NUMBERED_TITLE = re.compile(r"^(?:\d+(?:\.\d+)*\.?|[A-Z]\.\d+(?:\.\d+)*\.?)\s+\S")
_PAGE_NUMBER = re.compile(r"^(?:page\s+)?\d{1,4}$", re.IGNORECASE)
_ENDS_SENTENCE = re.compile(r"[.!?:][\"')\]]*$")
_DIGITS = re.compile(r"\d+")


class Kind(Enum):
    body = "body"
    heading = "heading"
    furniture = "furniture"


@dataclass(frozen=True, slots=True)
class Paragraph:
    text: str
    kind: Kind


def normalize(text: str) -> str:
    """NFKC, soft hyphens dropped, line-end hyphenation joined; line breaks kept."""
    text = unicodedata.normalize("NFKC", text).replace("\u00ad", "")
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return _HYPHENATED.sub(_join_hyphenated, text)


def paragraphs(pages: Sequence[str]) -> list[list[Paragraph]]:
    """Each page's paragraphs (the pages' texts as extracted, in order)."""
    lines = [_lines(normalize(text)) for text in pages]
    running = _running_heads(lines)
    return [_page_paragraphs(page, running) for page in lines]


def ends_sentence(text: str) -> bool:
    return bool(_ENDS_SENTENCE.search(text))


def _join_hyphenated(match: re.Match[str]) -> str:
    following = match.string[match.end()]
    return match.group(1) if following.islower() else match.group(0)


def _lines(text: str) -> list[str]:
    """Lines with whitespace collapsed; a blank line stays as ''. A lone section number joins
    the title on the next line."""
    lines = [_SPACES.sub(" ", line).strip() for line in text.split("\n")]
    merged: list[str] = []
    for line in lines:
        if (
            merged
            and _SECTION_NUMBER.match(merged[-1])
            and "." in merged[-1]  # a bare "3" is more often a page number
            and _looks_like_heading(line)
            and not _NUMBERED_TITLE.match(line)
        ):
            merged[-1] = f"{merged[-1]} {line}"
        else:
            merged.append(line)
    return merged


def _key(line: str) -> str:
    return _DIGITS.sub("#", line.lower())


def _edges(page: list[str]) -> list[str]:
    filled = [line for line in page if line]
    return filled[:2] + filled[-2:] if len(filled) > 4 else filled


def _running_heads(pages: list[list[str]]) -> set[str]:
    seen = Counter(key for page in pages for key in {_key(line) for line in _edges(page)})
    return {key for key, count in seen.items() if count >= _FURNITURE_PAGES}


def _is_furniture(line: str, edge: bool, running: set[str]) -> bool:
    return edge and (bool(_PAGE_NUMBER.match(line)) or _key(line) in running)


def _looks_like_heading(line: str) -> bool:
    words = line.split()
    if not 0 < len(words) <= MAX_HEADING_WORDS or len(line) > MAX_HEADING_CHARS:
        return False
    numbered = bool(_NUMBERED_TITLE.match(line))
    if line[-1] in ".,;:!" or (line[-1] == "?" and not numbered):
        return False
    if not any(char.isalpha() for char in line):
        return False
    return line[0].isupper() or numbered


def _page_paragraphs(page: list[str], running: set[str]) -> list[Paragraph]:
    filled = [line for line in page if line]
    edges = set(range(min(2, len(filled)))) | set(range(max(0, len(filled) - 2), len(filled)))
    lengths = sorted(len(line) for line in filled)
    usual = lengths[int(0.8 * (len(lengths) - 1))] if lengths else 0
    out: list[Paragraph] = []
    current: list[str] = []
    previous: Kind | None = None  # kind of the previous line (None: top of page, or blank)
    sentence_end = True  # the previous body line ended a sentence
    closed = True  # ... and its paragraph (it also stopped short)

    def flush() -> None:
        if current:
            out.append(Paragraph(" ".join(current), Kind.body))
            current.clear()

    following = [*page[1:], ""]
    index = -1
    for line, after in zip(page, following, strict=True):
        if not line:
            flush()
            previous, sentence_end, closed = None, True, True
            continue
        index += 1
        if _is_furniture(line, index in edges, running):
            flush()
            out.append(Paragraph(line, Kind.furniture))
            previous, closed = Kind.furniture, True
        elif (
            (previous != Kind.body or sentence_end)
            and not after[:1].islower()  # a sentence goes on: "For example\nthe ..."
            and _looks_like_heading(line)
        ):
            flush()
            out.append(Paragraph(line, Kind.heading))
            previous, closed = Kind.heading, True
        else:
            if previous == Kind.body and closed:
                flush()
            current.append(line)
            previous = Kind.body
            sentence_end = ends_sentence(line)
            closed = sentence_end and len(line) < _SHORT_LINE * usual
    flush()
    return out
