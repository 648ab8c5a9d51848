"""A page's positioned words, and their compact form for the wire, the store and the API. Pure:
no PyMuPDF, no I/O (the lead may move it to ``service/domain/``).

    Word(x0, y0, x1, y1, text, block, line)   # pixels of the page image, rounded outward
    data = encode_words(words)                 # bytes: what the render process sends and the
    words = decode_words(data)                 #   store keeps; decode gives the words back

Coordinates are integers in the pixel grid of the page's image (``x1``/``y1`` exclusive, so a
box is ``x1 - x0`` pixels wide). ``block`` and ``line`` number the page's blocks from 0 in
reading order, and each block's lines from 0; words come in reading order.

The compact form, version 1 (every integer an unsigned LEB128 varint; "signed" ones zigzag):

    b"\\x01"                                  version
    n_blocks, then lines in each block       the structure: which words share a line, a block
    n_lines-many counts: words in each line
    per word: dx, dy (signed), width, height, text length in UTF-8 bytes
    the words' UTF-8 text, back to back

``dx`` is ``x0`` less the previous word's ``x1`` on the same line (a word gap: small), or less
the previous line's first ``x0`` for a line's first word; ``dy`` is ``y0`` less the previous
word's ``y0`` (0 along a line). So a box costs about 4-5 bytes instead of 16.

Measured on a dense page (600 words, 150 DPI, ``bench/ocr.py``): about 10 bytes a word, some
6 KB a page, against about 48 KB as a JSON list of dicts and 21 KB as a JSON list of lists;
zlib on top of this form saves only about 25% more (the text, mostly), so it is left to the
store's own compression.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import NamedTuple

VERSION = 1


class Word(NamedTuple):
    """One word and its box in image pixels; ``block``/``line`` group words in reading order."""

    x0: int
    y0: int
    x1: int
    y1: int
    text: str
    block: int
    line: int


def normalise(words: Iterable[Word]) -> list[Word]:
    """``words`` renumbered densely: blocks from 0 in order, each block's lines from 0. A new
    block or line starts wherever the number changes from the word before (what the sources
    give: MuPDF counts image blocks too, Tesseract counts from its own)."""
    out: list[Word] = []
    block = line = -1
    previous: tuple[int, int] | None = None
    for word in words:
        if previous is None or word.block != previous[0]:
            block, line = block + 1, 0
        elif word.line != previous[1]:
            line += 1
        previous = (word.block, word.line)
        out.append(word._replace(block=block, line=line))
    return out


def encode_words(words: Sequence[Word]) -> bytes:
    """The compact form of ``words``; decoding numbers them as ``normalise`` does."""
    blocks: list[int] = []  # lines in each block
    lines: list[int] = []  # words in each line
    boxes = bytearray()
    texts: list[bytes] = []
    key: tuple[int, int] | None = None  # the previous word's (block, line)
    x1 = y0 = line_x0 = 0  # the previous word's x1 and y0, its line's first x0
    for word in words:
        if word.x1 < word.x0 or word.y1 < word.y0 or min(word.x0, word.y0) < 0:
            raise ValueError(f"not a box in an image: {tuple(word[:4])}")
        if key is None or word.block != key[0]:
            blocks.append(1)
            lines.append(1)
        elif word.line != key[1]:
            blocks[-1] += 1
            lines.append(1)
        else:
            lines[-1] += 1
        if lines[-1] == 1:  # a line's first word: from the previous line's start
            dx, line_x0 = word.x0 - line_x0, word.x0
        else:  # from the end of the word before it
            dx = word.x0 - x1
        text = word.text.encode()
        for value in (_zigzag(dx), _zigzag(word.y0 - y0), word.x1 - word.x0, word.y1 - word.y0):
            _varint(boxes, value)
        _varint(boxes, len(text))
        texts.append(text)
        key, x1, y0 = (word.block, word.line), word.x1, word.y0
    out = bytearray([VERSION])
    _varint(out, len(blocks))
    for count in (*blocks, *lines):
        _varint(out, count)
    return bytes(out + boxes + b"".join(texts))


def decode_words(data: bytes) -> list[Word]:
    """The words ``encode_words`` wrote; ``ValueError`` for anything else (corrupt, truncated,
    another version), never an allocation a corrupt count asked for."""
    if not data:
        return []
    if data[0] != VERSION:
        raise ValueError(f"unknown words format {data[0]}")
    reader = _Reader(data)
    blocks = reader.counts(reader.varint(), least=1)
    lines = reader.counts(sum(blocks), least=1)
    reader.need(5 * sum(lines))  # five varints a word, at least a byte each
    fields = [[reader.varint() for _ in range(5)] for _ in range(sum(lines))]
    words: list[Word] = []
    offset = reader.offset
    x1 = y0 = line_x0 = 0
    counts = iter(fields)
    line_index = 0
    for block, line_count in enumerate(blocks):
        for line in range(line_count):
            for position in range(lines[line_index]):
                dx, dy, width, height, size = next(counts)
                if position == 0:
                    x0 = line_x0 = line_x0 + _unzigzag(dx)
                else:
                    x0 = x1 + _unzigzag(dx)
                y0 += _unzigzag(dy)
                x1, end = x0 + width, offset + size
                if x0 < 0 or y0 < 0 or end > len(data):
                    raise ValueError("truncated or corrupt words")
                try:
                    text = data[offset:end].decode()
                except UnicodeDecodeError:
                    raise ValueError("corrupt words text") from None
                words.append(Word(x0, y0, x1, y0 + height, text, block, line))
                offset = end
            line_index += 1
    if offset != len(data):
        raise ValueError("trailing bytes after the words")
    return words


def text_of(words: Sequence[Word]) -> str:
    """The words as plain text the way MuPDF writes a page's: a line's words joined by spaces,
    every line ended by a newline."""
    lines: list[str] = []
    current: list[str] = []
    for index, word in enumerate(words):
        current.append(word.text)
        after = words[index + 1] if index + 1 < len(words) else None
        if after is None or (after.block, after.line) != (word.block, word.line):
            lines.append(" ".join(current) + "\n")
            current = []
    return "".join(lines)


def _zigzag(value: int) -> int:
    return value * 2 if value >= 0 else -value * 2 - 1


def _unzigzag(value: int) -> int:
    return value // 2 if value % 2 == 0 else -(value + 1) // 2


def _varint(out: bytearray, value: int) -> None:
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)


class _Reader:
    """Varints from ``data`` after its version byte, bounds-checked."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.offset = 1

    def varint(self) -> int:
        value = shift = 0
        while True:
            if self.offset >= len(self.data) or shift > 63:
                raise ValueError("truncated or corrupt words")
            byte = self.data[self.offset]
            self.offset += 1
            value |= (byte & 0x7F) << shift
            if byte < 0x80:
                return value
            shift += 7

    def need(self, size: int) -> None:
        """At least ``size`` bytes are left (checked before a count is trusted)."""
        if size > len(self.data) - self.offset:
            raise ValueError("truncated or corrupt words")

    def counts(self, number: int, *, least: int) -> list[int]:
        """``number`` counts, each at least ``least`` (an empty block or line is not written)."""
        self.need(number)
        values = [self.varint() for _ in range(number)]
        if any(value < least for value in values):
            raise ValueError("corrupt words structure")
        return values
