"""service/retrieval/terms.py and bm25.py: the analysis, the stored term vectors, and BM25 over
hand-made passages and against a plain Python BM25."""

from __future__ import annotations

import math
import random
from collections import Counter

import numpy as np
import pytest

from service.retrieval import bm25, terms
from service.retrieval.bm25 import Postings


def _search(chapters: list[list[str]], query: str, k: int = 10) -> list[tuple[int, int]]:
    """(chapter, passage) of the best ``k`` for the query, best first."""
    postings = [
        Postings.from_stored([terms.term_vector(p) for p in passages]) for passages in chapters
    ]
    which, rows, _ = bm25.top_k(postings, terms.query_terms(query), k)
    return list(zip(which.tolist(), rows.tolist(), strict=True))


def test_analysis_lowercases_drops_stop_words_and_stems():
    assert terms.stems("The Harbours were RUNNING; it's LC_ALL 2.5") == [
        "harbour", "run", "lc_all", "2", "5"
    ]  # fmt: skip


def test_a_term_vector_counts_each_stem_once_sorted_by_id():
    stored = np.frombuffer(terms.term_vector("tides tide tidal moon the moon moon"), terms.TERM)

    counts = dict(zip(stored["id"].tolist(), stored["count"].tolist(), strict=True))
    assert stored["id"].tolist() == sorted(stored["id"].tolist())
    assert counts == {
        terms.term_id("tide"): 2, terms.term_id("tidal"): 1, terms.term_id("moon"): 3
    }  # fmt: skip


def test_a_rare_word_beats_a_common_one():
    passages = [f"the harbour keeps ledger {n}" for n in range(20)]
    passages[7] = "the lighthouse keeps ledger 7"

    found = _search([passages], "harbour lighthouse", k=3)

    assert found[0] == (0, 7)  # "lighthouse" is in 1 passage of 20, "harbour" in 19


def test_a_short_passage_beats_a_long_one_with_the_word_as_often():
    filler = " ".join(f"filler{n}" for n in range(60))
    passages = [f"tide {filler}", "tide moon", f"{filler} quay"]

    found = _search([passages], "tide", k=3)

    assert found == [(0, 1), (0, 0)]  # the third holds no query word: never returned


def test_idf_counts_the_whole_scope_across_chapters():
    # "anchor" is common in chapter 0 and rare in chapter 1; "quay" the other way round. Over
    # the scope each is in 6 passages of 12: a tie broken by length, not by chapter.
    first = ["anchor"] * 5 + ["quay wharf"]
    second = ["quay"] * 5 + ["anchor"]

    found = _search([first, second], "anchor quay", k=12)

    assert len(found) == 12
    assert found[-1] == (0, 5)  # the longest passage that holds a word


def test_no_query_terms_or_no_passages_find_nothing():
    assert _search([["tide moon"]], "the and of") == []
    assert _search([[]], "tide") == []
    assert _search([], "tide") == []


def _plain_bm25(passages: list[str], query: str, k1: float, b: float) -> dict[int, float]:
    analysed = [Counter(terms.stems(p)) for p in passages]
    avgdl = sum(sum(c.values()) for c in analysed) / len(analysed)
    scores: dict[int, float] = {}
    for term in set(terms.stems(query)):
        n = sum(1 for c in analysed if term in c)
        idf = math.log(1 + (len(passages) - n + 0.5) / (n + 0.5))
        for row, counts in enumerate(analysed):
            if (f := counts.get(term, 0)) > 0:
                norm = k1 * (1 - b + b * sum(counts.values()) / avgdl)
                scores[row] = scores.get(row, 0.0) + idf * f / (f + norm)
    return scores


@pytest.mark.parametrize(("k1", "b"), [(1.2, 0.75), (0.9, 0.4), (2.0, 1.0)])
def test_scores_are_plain_bm25_over_all_chapters_as_one_collection(k1, b):
    rng = random.Random(4)
    words = [f"w{n}" for n in range(40)]
    chapters = [
        [" ".join(rng.choices(words, k=rng.randint(3, 30))) for _ in range(rng.randint(0, 40))]
        for _ in range(12)
    ]
    everything = [p for chapter in chapters for p in chapter]
    starts = np.cumsum([0, *map(len, chapters)])
    postings = [Postings.from_stored([terms.term_vector(p) for p in c]) for c in chapters]

    which, rows, scores = bm25.top_k(postings, terms.query_terms("w1 w7 w7 w30"), 1000, k1=k1, b=b)

    expected = _plain_bm25(everything, "w1 w7 w7 w30", k1, b)
    found = {int(starts[w] + r): s for w, r, s in zip(which, rows, scores, strict=True)}
    assert found == pytest.approx(expected)
    assert scores.tolist() == sorted(scores.tolist(), reverse=True)


def test_a_chapter_of_more_than_65536_passages_has_wide_rows():
    postings = Postings.from_stored([terms.term_vector("tide moon")] * 69_999 + [b""] + [
        terms.term_vector("tide")
    ])  # fmt: skip

    assert postings.rows.dtype == np.uint32
    assert bm25.top_k([postings], terms.query_terms("tide"), 1)[1].tolist() == [70_000]


def test_a_stored_vector_of_the_wrong_length_is_refused():
    with pytest.raises(ValueError, match="not a term vector"):
        Postings.from_stored([b"\x00" * 7])
