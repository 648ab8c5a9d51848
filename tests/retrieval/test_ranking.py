"""service/retrieval/ranking.py: top-k and fusion against brute force, BSON vectors through a
real mongod, the scope cache's budget."""

from __future__ import annotations

import asyncio

import numpy as np
import pymongo
import pytest
from bson.binary import Binary, BinaryVectorDtype

from service.retrieval.bm25 import Postings
from service.retrieval.ranking import (
    Scope,
    ScopeCache,
    hybrid,
    rrf,
    top_k,
    top_k_across,
    vector_to_bson,
    vectors_from_bson,
)
from service.retrieval.terms import term_vector

rng = np.random.default_rng(7)


def unit_rows(n: int, dim: int = 384) -> np.ndarray:
    matrix = rng.standard_normal((n, dim)).astype(np.float32)
    return matrix / np.linalg.norm(matrix, axis=1, keepdims=True)


@pytest.mark.parametrize(("n", "k"), [(1000, 10), (1000, 1), (50, 50), (20, 100), (5000, 300)])
def test_top_k_is_the_brute_force_ranking(n, k):
    matrix, query = unit_rows(n), unit_rows(1)[0]

    rows, scores = top_k(matrix, query, k)

    expected = np.argsort(-(matrix @ query), kind="stable")[:k]
    assert rows.tolist() == expected.tolist()
    np.testing.assert_array_equal(scores, (matrix @ query)[expected])


def _top_k_chapter_by_chapter(matrices, query, k):
    """What search did before top_k_across: top_k of each matrix, their lists merged and
    sorted in Python."""
    found = []
    for which, matrix in enumerate(matrices):
        rows, scores = top_k(matrix, query, k)
        found.extend(((which, int(r)), float(s)) for r, s in zip(rows, scores, strict=True))
    found.sort(key=lambda item: item[1], reverse=True)
    return found[:k]


@pytest.mark.parametrize("k", [1, 10, 50, 400])
def test_top_k_across_matrices_is_the_chapter_by_chapter_top_k(k):
    sizes = [0, *rng.integers(1, 120, 40).tolist(), 0, 3]
    matrices, query = [unit_rows(n) for n in sizes], unit_rows(1)[0]

    which, rows, scores = top_k_across(matrices, query, k)

    found = [((int(w), int(r)), float(s)) for w, r, s in zip(which, rows, scores, strict=True)]
    assert found == _top_k_chapter_by_chapter(matrices, query, k)


def test_top_k_across_no_matrices_is_empty():
    which, rows, scores = top_k_across([], unit_rows(1)[0], 10)

    assert which.size == rows.size == scores.size == 0


def test_top_k_of_nothing_is_empty():
    assert top_k(unit_rows(10), unit_rows(1)[0], 0)[0].size == 0
    assert top_k(np.empty((0, 384), np.float32), unit_rows(1)[0], 5)[0].size == 0


def test_rrf_sums_reciprocal_ranks():
    fused = rrf([["a", "b", "c"], ["c", "a", "d"]], k=60)

    expected = {
        "a": 1 / 61 + 1 / 62,
        "b": 1 / 62,
        "c": 1 / 63 + 1 / 61,
        "d": 1 / 63,
    }
    assert [item for item, _ in fused] == ["a", "c", "b", "d"]
    for item, score in fused:
        assert score == pytest.approx(expected[item])


def test_rrf_matches_brute_force_on_random_rankings():
    ids = list(range(200))
    rankings = [list(rng.permutation(ids)[: rng.integers(1, 80)]) for _ in range(3)]

    fused = rrf(rankings, k=10)

    brute = {i: sum(1 / (10 + r.index(i) + 1) for r in rankings if i in r) for i in ids}
    brute = {i: s for i, s in brute.items() if s}
    assert dict(fused) == pytest.approx(brute)
    assert [s for _, s in fused] == sorted(brute.values(), reverse=True)


def test_rrf_ties_keep_first_seen_order():
    assert [item for item, _ in rrf([["x"], ["y"]])] == ["x", "y"]


def test_rrf_weights_scale_each_ranking():
    fused = dict(rrf([["a", "b"], ["b", "a"]], k=10, weights=[1.0, 0.5]))

    assert fused["a"] == pytest.approx(1 / 11 + 0.5 / 12)
    assert fused["b"] == pytest.approx(1 / 12 + 0.5 / 11)


def test_hybrid_fuses_the_vector_top_50_with_the_keyword_top_10_at_half_weight():
    vector = [f"v{i}" for i in range(60)]
    keyword = ["k0", "v55", "v1", *[f"k{i}" for i in range(1, 30)]]

    fused = dict(hybrid(keyword, vector))

    assert set(fused) == set(vector[:50]) | set(keyword[:10])
    assert fused["v0"] == pytest.approx(1 / 11)  # vector rank 1
    assert fused["k0"] == pytest.approx(0.5 / 11)  # keyword rank 1, half weight
    assert fused["v55"] == pytest.approx(0.5 / 12)  # past the vector depth: keyword only
    assert fused["v1"] == pytest.approx(1 / 12 + 0.5 / 13)  # in both


def test_bson_vectors_round_trip_bit_for_bit():
    special = np.array([0.0, -0.0, 1e-45, -3.4e38, np.inf, 1 / 3], dtype=np.float32)
    vectors = np.concatenate([unit_rows(3, 6), special[None, :]])

    stored = [vector_to_bson(vector) for vector in vectors]
    back = vectors_from_bson(stored, 6)

    assert all(b.subtype == 9 and len(b) == 2 + 4 * 6 for b in stored)
    assert back.dtype == np.float32
    np.testing.assert_array_equal(back.view(np.uint32), vectors.view(np.uint32))
    for binary, vector in zip(stored, vectors, strict=True):
        assert binary.as_vector().dtype == BinaryVectorDtype.FLOAT32
        assert binary == Binary.from_vector(vector.tolist(), BinaryVectorDtype.FLOAT32)


def test_bson_vectors_round_trip_through_mongod(mongod):
    vectors = unit_rows(200)
    with pymongo.MongoClient(mongod.url) as client:
        collection = client.pcj_retrieval_test.vectors
        collection.drop()
        collection.insert_many(
            [{"_id": i, "embedding": vector_to_bson(v)} for i, v in enumerate(vectors)]
        )
        docs = list(collection.find({}, {"embedding": 1}).sort("_id", 1))
        collection.drop()

    back = vectors_from_bson([doc["embedding"] for doc in docs], 384)

    np.testing.assert_array_equal(back.view(np.uint32), vectors.view(np.uint32))


def test_other_vectors_are_refused():
    with pytest.raises(ValueError, match="384-dimensional"):
        vectors_from_bson([vector_to_bson(unit_rows(1, 10)[0])], 384)
    int8 = Binary.from_vector([1] * 1538, BinaryVectorDtype.INT8)  # the right size, not FLOAT32
    with pytest.raises(ValueError, match="FLOAT32"):
        vectors_from_bson([int8], 384)
    with pytest.raises(ValueError, match="one vector"):
        vector_to_bson(unit_rows(2))


def scope(rows: int) -> Scope[str]:
    return Scope([f"c{i}" for i in range(rows)], unit_rows(rows))


def test_cache_evicts_the_least_recently_used_past_its_budget():
    one = scope(100).nbytes
    cache: ScopeCache[str] = ScopeCache(budget_bytes=3 * one)
    for name in ("a", "b", "c"):
        cache.put(("alice", name, 1), scope(100))
    cache.get(("alice", "a", 1))  # a is now the most recent

    cache.put(("alice", "d", 1), scope(100))

    assert cache.get(("alice", "b", 1)) is None
    assert all(cache.get(("alice", name, 1)) is not None for name in ("a", "c", "d"))
    assert cache.nbytes == 3 * one <= cache.budget_bytes


def test_a_scopes_postings_count_in_the_cache_budget():
    passages = [f"tide moon harbour {n}" for n in range(100)]
    postings = Postings.from_stored([term_vector(p) for p in passages])
    bare, keyed = scope(100), Scope(scope(100).ids, unit_rows(100), postings=postings)
    # Room for the vectors of two scopes, not for those and the postings.
    cache: ScopeCache[str] = ScopeCache(budget_bytes=2 * bare.nbytes + postings.nbytes // 2)

    cache.put(("alice", "bare", 1), bare)
    cache.put(("alice", "keyed", 1), keyed)

    assert keyed.nbytes == bare.nbytes + postings.nbytes
    assert postings.nbytes >= 100 * 4 * 3  # 4 terms a passage, 3 bytes each at least
    assert cache.get(("alice", "bare", 1)) is None  # evicted: both do not fit
    assert cache.get(("alice", "keyed", 1)) is keyed


def test_cache_does_not_keep_a_scope_over_its_budget():
    cache: ScopeCache[str] = ScopeCache(budget_bytes=scope(10).nbytes)

    cache.put(("alice", "big", 1), scope(11))

    assert len(cache) == 0
    assert cache.nbytes == 0


def test_cache_keeps_versions_apart_and_discards_a_scope():
    cache: ScopeCache[str] = ScopeCache(budget_bytes=10**8)
    cache.put(("alice", "ch1", 1), scope(5))
    cache.put(("alice", "ch1", 2), scope(6))
    cache.put(("bob", "ch1", 1), scope(7))

    assert len(cache.get(("alice", "ch1", 2)).ids) == 6
    cache.discard("alice", "ch1")

    assert cache.get(("alice", "ch1", 1)) is None
    assert cache.get(("alice", "ch1", 2)) is None
    assert cache.get(("bob", "ch1", 1)) is not None
    assert cache.nbytes == scope(7).nbytes


async def test_concurrent_loads_of_one_scope_load_it_once():
    cache: ScopeCache[str] = ScopeCache(budget_bytes=10**8)
    loads = 0
    release = asyncio.Event()

    async def load() -> Scope[str]:
        nonlocal loads
        loads += 1
        await release.wait()
        return scope(4)

    waiters = [asyncio.create_task(cache.get_or_load(("alice", "ch1", 1), load)) for _ in range(5)]
    await asyncio.sleep(0)
    release.set()
    results = await asyncio.gather(*waiters)

    assert loads == 1
    assert all(result is results[0] for result in results)
    assert await cache.get_or_load(("alice", "ch1", 1), load) is results[0]


async def test_a_failed_load_fails_its_waiters_and_is_not_cached():
    cache: ScopeCache[str] = ScopeCache(budget_bytes=10**8)
    release = asyncio.Event()

    async def failing() -> Scope[str]:
        await release.wait()
        raise ConnectionError("mongod away")

    waiters = [asyncio.create_task(cache.get_or_load(("a", "s", 1), failing)) for _ in range(3)]
    await asyncio.sleep(0)
    release.set()
    results = await asyncio.gather(*waiters, return_exceptions=True)

    assert all(isinstance(result, ConnectionError) for result in results)
    assert len(cache) == 0

    async def working() -> Scope[str]:
        return scope(2)

    assert len((await cache.get_or_load(("a", "s", 1), working)).ids) == 2
