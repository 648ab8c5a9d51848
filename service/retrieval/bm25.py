"""Keyword ranking by BM25 over chapters' postings, in numpy. Pure (no I/O).

A chapter's passages' term vectors (``service/retrieval/terms.py``) are turned, once, into its
``Postings``: compressed sparse rows by term, as plain arrays (no Python object per term or
passage), so a cached chapter costs about 3 bytes a (passage, term) pair plus 12 a distinct
term and 4 a passage:

    terms   uint32[V]      the chapter's distinct term ids, sorted
    starts  int32[V + 1]   term i's postings are [starts[i], starts[i + 1])
    rows    uint16[P]      the passage (row) of each posting, ascending within a term
                           (uint32 for a chapter of 65,536 passages or more)
    counts  uint8[P]       how often the term occurs in that passage
    lengths float32[N]     each passage's length in terms (stop words not counted)

``top_k`` scores a query over many chapters as over one collection (Robertson's BM25 as Lucene
computes it): for each query term t and passage d,

    idf(t) * f / (f + k1 * (1 - b + b * |d| / avgdl)),   idf(t) = ln(1 + (N - n + 0.5) / (n + 0.5))

with f the term's count in d, N the passages of the whole scope searched, n those holding t, and
avgdl their mean length: the rarer a word across the scope, the more it weighs, and a word found
in a long passage weighs less than in a short one. Only the postings of the query's terms are
read; the scores land in one array over the scope, and one partial sort picks the best.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from service.retrieval.ranking import best
from service.retrieval.terms import TermIds, decode

# Lucene's defaults; bench/index.py measures others on the evaluation set.
K1 = 1.2
B = 0.75


@dataclass(frozen=True, slots=True)
class Postings:
    """One chapter's passages by term (see the module)."""

    terms: TermIds
    starts: npt.NDArray[np.int32]
    rows: npt.NDArray[np.unsignedinteger]
    counts: npt.NDArray[np.uint8]
    lengths: npt.NDArray[np.float32]

    @property
    def passages(self) -> int:
        return len(self.lengths)

    @property
    def nbytes(self) -> int:
        arrays = (self.terms, self.starts, self.rows, self.counts, self.lengths)
        return sum(int(array.nbytes) for array in arrays)

    @classmethod
    def from_stored(cls, vectors: Sequence[bytes]) -> Postings:
        """The postings of passages given by their stored term vectors, row for row."""
        entries, sizes = decode(vectors)
        n = len(vectors)
        row_type = np.uint16 if n <= np.iinfo(np.uint16).max + 1 else np.uint32
        rows = np.repeat(np.arange(n, dtype=row_type), sizes)
        order = np.argsort(entries["id"], kind="stable")  # rows stay ascending within a term
        ids = entries["id"][order]
        firsts = np.flatnonzero(np.diff(ids)) + 1 if len(ids) else np.empty(0, np.intp)
        starts = np.concatenate(([0], firsts, [len(ids)])) if len(ids) else np.zeros(1)
        counts = entries["count"]
        lengths = np.bincount(rows, weights=counts, minlength=n).astype(np.float32)
        ordered_rows: npt.NDArray[np.unsignedinteger] = rows[order]  # type: ignore[assignment]
        return cls(
            terms=np.ascontiguousarray(ids[starts[:-1].astype(np.intp)]),
            starts=starts.astype(np.int32),
            rows=ordered_rows,
            counts=np.ascontiguousarray(counts[order]),
            lengths=lengths,
        )


def top_k(
    chapters: Sequence[Postings], query: TermIds, k: int, *, k1: float = K1, b: float = B
) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp], npt.NDArray[np.float64]]:
    """The ``k`` passages of ``chapters`` (one scope) that score highest for the query's terms
    (distinct ids, sorted), best first: ``(chapter index, row in it, score)``. Passages that
    hold none of the terms are never returned.

    A few numpy calls a chapter find the query's terms in it; their postings are taken as
    views, joined once, and scored all together."""
    empty = np.empty(0, dtype=np.intp)
    sizes = [chapter.passages for chapter in chapters]
    total = sum(sizes)
    if k <= 0 or total == 0 or len(query) == 0:
        return empty, empty, np.empty(0, dtype=np.float64)
    bounds = np.zeros(len(chapters) + 1, dtype=np.intp)
    np.cumsum(sizes, out=bounds[1:])
    rows: list[npt.NDArray[np.unsignedinteger]] = []
    counts: list[npt.NDArray[np.uint8]] = []
    slices: list[tuple[int, int, int]] = []  # (term, first passage of its chapter, postings)
    for index, chapter in enumerate(chapters):
        if not len(chapter.terms):
            continue
        at = np.minimum(np.searchsorted(chapter.terms, query), len(chapter.terms) - 1)
        held = np.flatnonzero(chapter.terms[at] == query)
        if not len(held):
            continue
        firsts = chapter.starts[at[held]].tolist()
        ends = chapter.starts[at[held] + 1].tolist()
        base = int(bounds[index])
        for term, first, end in zip(held.tolist(), firsts, ends, strict=True):
            rows.append(chapter.rows[first:end])
            counts.append(chapter.counts[first:end])
            slices.append((term, base, end - first))
    if not rows:
        return empty, empty, np.empty(0, dtype=np.float64)
    term_of, base_of, length_of = (
        np.array(column, dtype=np.intp) for column in zip(*slices, strict=True)
    )
    frequency = np.bincount(term_of, weights=length_of, minlength=len(query))  # n of each term
    idf = np.log1p((total - frequency + 0.5) / (frequency + 0.5))
    lengths = np.concatenate([chapter.lengths for chapter in chapters])
    avgdl = max(float(lengths.sum(dtype=np.float64)) / total, 1e-9)
    where = np.concatenate(rows).astype(np.intp) + np.repeat(base_of, length_of)
    f = np.concatenate(counts).astype(np.float64)
    norm = k1 * (1.0 - b + b * lengths[where] / avgdl)
    weights = idf[np.repeat(term_of, length_of)] * f / (f + norm)
    scores = np.bincount(where, weights=weights, minlength=total).astype(np.float64)
    matched = np.flatnonzero(scores > 0)  # only passages that hold a term (idf, f > 0)
    picked, score = best(scores[matched], k)
    chosen = matched[picked]
    which = np.searchsorted(bounds, chosen, side="right") - 1
    return which, chosen - bounds[which], score
