"""Ranking for hybrid search: exact top-k by inner product, reciprocal rank fusion, vectors in
BSON, and a bounded cache of the matrices searched. Pure (numpy and bson, no I/O).

Exact search, not an index: top-10 over 10,000 x 384 float32 takes 0.35-0.7 ms a query, over
100,000 8-9 ms on a quiet 2-core machine (NOTES.md) and 23-36 ms on this one under a load
average of 3-7 (bench/index.py), while HNSW builds (usearch, faiss) took minutes for 100k and
recalled 0.7-0.95. One user's library is far below 100k passages (407 pages made 1,894).

Hybrid: the keyword list (BM25, or MongoDB ``$text`` by ``textScore``) and the vector list
(``top_k``) are fused by ranks (``rrf``), so the two scales never need calibrating. ``hybrid``
weights them as measured by bench/index.py on bench/eval/retrieval.json (77 questions in other
words than their pages; MRR@10, 160-token passages): keyword search alone ($text) is weak on
paraphrases (0.38, vector 0.56), and textbook RRF (k=60, equal weights, top 50 of each) gains
little (0.58; with 210-token passages it lost to vector alone, 0.55 against 0.57, and lost
hit@5). A smaller k (10), the keyword list at half weight and only its first 10 give 0.63
(hit@1 0.55 against 0.44), on both halves of the questions (0.66 and 0.61), and their
neighbours (k 5-20, weight 0.5-1, depth 10-50) score 0.61-0.63: a plateau, not a lucky point.
Measured since with BM25 as
the keyword list (``bm25.py``; alone 0.43): the same weights give 0.62 (0.62 and 0.61 on the
halves), on a plateau of 0.58-0.62, and the weights each half picks score 0.62 and 0.63 on the
other, as $text's do (0.61 and 0.64): kept.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import numpy as np
import numpy.typing as npt
from bson.binary import Binary, BinaryVectorDtype

if TYPE_CHECKING:
    from service.retrieval.bm25 import Postings

Id = TypeVar("Id", bound=Hashable)
Matrix = npt.NDArray[np.float32]
Float = TypeVar("Float", bound=np.floating[Any])

RRF_K = 60  # the constant of Cormack et al. (2009)
# hybrid(): measured (see the module docstring).
HYBRID_K = 10
KEYWORD_WEIGHT = 0.5
KEYWORD_DEPTH = 10
VECTOR_DEPTH = 50
_VECTOR_SUBTYPE = 9
_FLOAT32_HEADER = bytes([BinaryVectorDtype.FLOAT32.value[0], 0])  # dtype 0x27, padding 0


def top_k(matrix: Matrix, query: Matrix, k: int) -> tuple[npt.NDArray[np.intp], Matrix]:
    """Rows of ``matrix`` with the ``k`` largest inner products with ``query``, best first:
    ``(row indices, scores)``. With unit vectors the inner product is the cosine."""
    return best(matrix @ query, k)


def best(scores: npt.NDArray[Float], k: int) -> tuple[npt.NDArray[np.intp], npt.NDArray[Float]]:
    """The ``k`` largest of ``scores``, best first: ``(indices, scores)``."""
    if k <= 0 or len(scores) == 0:
        return np.empty(0, dtype=np.intp), np.empty(0, dtype=scores.dtype)
    # The k best, unordered (O(n)); then only those k sorted.
    rows = np.argpartition(-scores, k - 1)[:k] if k < len(scores) else np.arange(len(scores))
    rows = rows[np.argsort(-scores[rows], kind="stable")]
    return rows, scores[rows]


def top_k_across(
    matrices: Sequence[Matrix], query: Matrix, k: int
) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp], Matrix]:
    """``top_k`` over the rows of several matrices at once, as if they were stacked (without
    stacking them): ``(matrix index, row in it, score)``, best first. Each matrix is scored
    into its slice of one array of scores, then one partial sort picks the ``k`` best, so the
    cost is one pass over the scores whatever the number of matrices (a library's chapters)."""
    starts = np.zeros(len(matrices) + 1, dtype=np.intp)
    np.cumsum([len(matrix) for matrix in matrices], out=starts[1:])
    scores = np.empty(int(starts[-1]), dtype=np.float32)
    for matrix, start, end in zip(matrices, starts[:-1], starts[1:], strict=True):
        if end > start:
            np.matmul(matrix, query, out=scores[start:end])
    rows, found = best(scores, k)
    which = np.searchsorted(starts, rows, side="right") - 1
    return which, rows - starts[which], found


def rrf(
    rankings: Sequence[Sequence[Id]], k: int = RRF_K, weights: Sequence[float] | None = None
) -> list[tuple[Id, float]]:
    """Reciprocal rank fusion: each id scored ``sum(weight / (k + rank))`` (ranks from 1) over
    the rankings it appears in, best first; ties keep the order in which ids were first seen."""
    scores: dict[Id, float] = {}
    for ranking, weight in zip(rankings, weights or [1.0] * len(rankings), strict=True):
        for rank, item in enumerate(ranking, start=1):
            scores[item] = scores.get(item, 0.0) + weight / (k + rank)
    return sorted(scores.items(), key=lambda entry: -entry[1])  # sorted() is stable


def hybrid(
    keyword: Sequence[Id],
    vector: Sequence[Id],
    *,
    k: int = HYBRID_K,
    keyword_weight: float = KEYWORD_WEIGHT,
    keyword_depth: int = KEYWORD_DEPTH,
    vector_depth: int = VECTOR_DEPTH,
) -> list[tuple[Id, float]]:
    """The hybrid ranking: ``keyword`` (``$text`` by ``textScore``) and ``vector`` (``top_k``)
    ids, best first each, fused by ``rrf`` with the measured weights and depths."""
    return rrf([vector[:vector_depth], keyword[:keyword_depth]], k=k, weights=[1.0, keyword_weight])


def vector_to_bson(vector: Matrix) -> Binary:
    """One vector as BSON binary subtype 9, FLOAT32 (1,538 bytes for 384 dimensions)."""
    if vector.ndim != 1:
        raise ValueError("one vector at a time")
    # A list, not the array: Binary.from_vector takes numpy arrays only from PyMongo 4.16, and
    # our floor is 4.13. tolist() and the driver's struct.pack are both C loops.
    values: list[float] = vector.astype(np.float32, copy=False).tolist()
    return Binary.from_vector(values, BinaryVectorDtype.FLOAT32)


def vectors_from_bson(values: Sequence[bytes], dimensions: int) -> Matrix:
    """Stored FLOAT32 vectors (``Binary`` of subtype 9) as one ``(n, dimensions)`` matrix, with
    no loop over elements in Python: the blobs are joined, viewed as rows, headers checked and
    dropped in numpy."""
    width = 2 + 4 * dimensions
    blob = np.frombuffer(b"".join(values), dtype=np.uint8)
    if blob.size != width * len(values):
        raise ValueError(f"not all vectors are {dimensions}-dimensional FLOAT32")
    rows = blob.reshape(len(values), width)
    if len(values) and not (rows[:, :2] == np.frombuffer(_FLOAT32_HEADER, np.uint8)).all():
        raise ValueError("not all vectors are FLOAT32 BSON vectors")
    matrix = np.ascontiguousarray(rows[:, 2:]).view("<f4").astype(np.float32, copy=False)
    return matrix.reshape(len(values), dimensions)


@dataclass(frozen=True, slots=True)
class Scope(Generic[Id]):
    """One searchable set: its passage ids; their vectors, row for row (or, when only some
    passages have one, the rows of ``ids`` that ``vector_rows`` names); their postings for
    keyword search, when they were stored with term vectors."""

    ids: Sequence[Id]
    matrix: Matrix
    postings: Postings | None = None
    vector_rows: npt.NDArray[np.intp] | None = None

    def vector_id(self, row: int) -> Id:
        """The id of the passage of the matrix's ``row``."""
        return self.ids[row if self.vector_rows is None else int(self.vector_rows[row])]

    @property
    def nbytes(self) -> int:
        # An id is a 36-character str (85 bytes) and its list slot (8).
        size = int(self.matrix.nbytes) + 96 * len(self.ids)
        if self.vector_rows is not None:
            size += int(self.vector_rows.nbytes)
        return size + (self.postings.nbytes if self.postings is not None else 0)


Key = tuple[str, str, object]  # (user id, scope: a chapter or a book, version)


class ScopeCache(Generic[Id]):
    """The matrices searched lately, least recently used evicted past ``budget_bytes``.

    Keyed by ``(user, scope, version)``: a scope whose passages change gets a new version (the
    job's or chapter's update counter), so a stale matrix is never served; old versions age out.
    Concurrent loads of one key share one load. A scope bigger than the budget is loaded and
    returned but not kept.
    """

    def __init__(self, budget_bytes: int) -> None:
        self.budget_bytes = budget_bytes
        self.nbytes = 0
        self._entries: OrderedDict[Key, Scope[Id]] = OrderedDict()
        self._loading: dict[Key, asyncio.Future[Scope[Id]]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: Key) -> Scope[Id] | None:
        scope = self._entries.get(key)
        if scope is not None:
            self._entries.move_to_end(key)
        return scope

    def put(self, key: Key, scope: Scope[Id]) -> None:
        if key in self._entries:
            self.nbytes -= self._entries.pop(key).nbytes
        if scope.nbytes > self.budget_bytes:
            return
        self._entries[key] = scope
        self.nbytes += scope.nbytes
        while self.nbytes > self.budget_bytes:
            self.nbytes -= self._entries.popitem(last=False)[1].nbytes

    def discard(self, user: str, scope: str) -> None:
        """Forget every version of one scope (its passages were deleted)."""
        for key in [key for key in self._entries if key[:2] == (user, scope)]:
            self.nbytes -= self._entries.pop(key).nbytes

    async def get_or_load(self, key: Key, load: Callable[[], Awaitable[Scope[Id]]]) -> Scope[Id]:
        """The cached scope, or ``load()``'s, loaded once however many ask at the same time."""
        if (scope := self.get(key)) is not None:
            return scope
        if (pending := self._loading.get(key)) is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[Scope[Id]] = asyncio.get_running_loop().create_future()
        self._loading[key] = future
        try:
            scope = await load()
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: waiters re-raise it; no "never retrieved" warning
            raise
        else:
            future.set_result(scope)
            self.put(key, scope)
            return scope
        finally:
            del self._loading[key]
