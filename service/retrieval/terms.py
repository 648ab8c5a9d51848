"""A passage's words as keyword search counts them: its sparse term vector.

    text ─▶ words ─▶ stop words dropped ─▶ stems ─▶ term ids ─▶ (id, count) pairs, by id
            \\w+,     Snowball's English    Snowball  CRC-32 of
            lower    list                  English   the stem

The same analysis as MongoDB's English text index (its stop words and stemmer are Snowball's),
so the two keyword searches match the same words; a query is analysed the same way. Words are
Unicode ``\\w+`` runs (letters, digits, ``_``), so ``LC_ALL`` and ``2.5`` stay searchable as
``lc_all``, ``2`` and ``5``; an apostrophe splits a word, so the stop list holds the pieces of
``don't`` and ``it's``.

Term ids are hashed (CRC-32 of the stem), not looked up in a vocabulary: a passage's terms are
known without any other passage's, so chapters are indexed and cached independently. Two stems
share an id with a chance of about one in 2^32 a pair: among the 100,000 distinct stems of a
large library, one pair or so, which merges their counts.

Stored on each passage (``document_chunks.terms``) as BSON binary: 5 bytes a distinct term, its
id (uint32, little-endian) then its count in the passage (uint8, capped at 255: a passage holds
at most ~250 of the model's tokens), sorted by id. ``ANALYZER`` names this analysis; a chapter
records it when indexed (``search.terms``), and a change to anything above needs a new name, so
that chapters analysed the old way are searched by MongoDB's text index until re-analysed.
"""

from __future__ import annotations

import re
import threading
import zlib
from collections import Counter
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import Stemmer

ANALYZER = "snowball-english-crc32-v1"
TERM = np.dtype([("id", "<u4"), ("count", "u1")])  # one stored entry: 5 bytes, no padding
MAX_COUNT = 255
TermIds = npt.NDArray[np.uint32]

_WORD = re.compile(r"\w+")
# Snowball's English stop words (those of MongoDB's English text index), with the pieces an
# apostrophe leaves of its contractions (don't -> don, t) in place of the contractions.
STOP_WORDS = frozenset(
    """
    i me my myself we our ours ourselves you your yours yourself yourselves he him his himself
    she her hers herself it its itself they them their theirs themselves what which who whom
    this that these those am is are was were be been being have has had having do does did
    doing would should could ought a an the and but if or because as until while of at by for
    with about against between into through during before after above below to from up down in
    out on off over under again further then once here there when where why how all any both
    each few more most other some such no nor not only own same so than too very cannot
    s t d ll m re ve isn aren wasn weren hasn haven hadn doesn don didn won wouldn shan shouldn
    can couldn mustn let
    """.split()  # noqa: SIM905 (a page of words reads better than 170 quoted ones)
)
_local = threading.local()  # a Stemmer is not thread-safe: one a thread


def _stemmer() -> Stemmer.Stemmer:
    stemmer: Stemmer.Stemmer | None = getattr(_local, "stemmer", None)
    if stemmer is None:
        stemmer = _local.stemmer = Stemmer.Stemmer("english")
    return stemmer


def stems(text: str) -> list[str]:
    """The text's words as analysed (see the module), in order."""
    words = [word for word in _WORD.findall(text.lower()) if word not in STOP_WORDS]
    found: list[str] = _stemmer().stemWords(words)
    return found


def term_id(stem: str) -> int:
    return zlib.crc32(stem.encode())


def term_vector(text: str) -> bytes:
    """The text's sparse term vector as stored: ``(id, count)`` entries sorted by id."""
    counts = Counter(stems(text))
    entries = np.empty(len(counts), dtype=TERM)
    entries["id"] = [term_id(stem) for stem in counts]
    entries["count"] = np.minimum(list(counts.values()), MAX_COUNT)
    entries.sort(order="id")
    return entries.tobytes()


def term_vectors(texts: Sequence[str]) -> list[bytes]:
    """``term_vector`` of each text (about 0.3 ms a 160-token passage: run it off the loop)."""
    return [term_vector(text) for text in texts]


def query_terms(text: str) -> TermIds:
    """The distinct term ids of a query, sorted."""
    return np.unique(np.array([term_id(stem) for stem in stems(text)], dtype=np.uint32))


def decode(vectors: Sequence[bytes]) -> tuple[npt.NDArray[np.void], npt.NDArray[np.intp]]:
    """Stored term vectors as one array of entries (``TERM``) and how many each vector has,
    without a loop over entries in Python."""
    sizes = np.fromiter((len(vector) for vector in vectors), dtype=np.intp, count=len(vectors))
    if (sizes % TERM.itemsize).any():
        raise ValueError("not a term vector: its length is not a multiple of 5 bytes")
    return np.frombuffer(b"".join(vectors), dtype=TERM), sizes // TERM.itemsize
