"""Search latency: POST /api/v1/search under granian against raw top-k, BM25 and $text, and how
long a new chapter waits until it is searchable.

1. API: one granian process (one worker), emulator-mode tokens, hybrid mode, k=10, one user
   whose library holds 10,000 and then 100,000 passages (``--chunks``; each size is its own
   user, so each starts cold), of two kinds of text (``--text``):
   - zipf: text of ~120 words drawn from the model's word list with Zipf's frequencies (so a
     question's words match thousands of passages), questions drawn the same way;
   - real: the evaluation PDFs' passages (bench/eval/retrieval.json, cut as the indexer cuts
     them), each chapter a run of consecutive passages from a random place, so 100,000
     passages repeat each of the ~1,800 about 50 times; the evaluation's 77 questions in turn.
   Passages are written straight into ``document_chunks`` as the indexer writes them, with
   their term vectors when the code under test has them: random unit 384-d float32 vectors as
   BSON vectors (``vector_to_bson``; latency does not depend on what they mean), 300-700
   passages a chapter, ten chapters a book, every chapter ``search.status: ready`` with the
   API's model; then the service's indexes (``indexes.sync``, ``$text`` included).
   ``--requests`` sequential searches, one question each: p50 and p99. The first search of
   each library loads its vectors and postings into the API's cache: it is reported apart,
   after a search of a tiny library has started the API's embedding process (reported apart
   too).
2. Baselines, interleaved request by request with the API's (order alternating), on the same
   questions: raw vector (numpy ``top_k`` over one in-memory matrix of the same vectors; the
   question embedded once beforehand by the in-process embedder, timed apart), raw ``$text``
   (the service's very query through PyMongo's sync client), raw BM25 (``bm25.top_k`` over
   the chapters' postings in this process), the fusion (``hybrid``), and their sum (with the
   keyword search the API runs); ratio API p50 / raw p50. The question's embedding alone
   through an EmbeddingProcess made as the API makes its own (one thread, one text a
   request) shows the embedding's share of the API's time.
3. Where the API's time goes, over the first 50 questions: the steps of
   ``service/jobs/search.py`` run in this process on the service's own functions and store
   (the rate limit, the scope, the keyword step and BM25 alone, the ``$text`` query it falls
   back to and the same without its ``chapter_id $in``; the vector step with cached vectors
   and its two parts: gathering the chapters' scopes, ``top_k_across``; fusion, results,
   thumbnails, snippets, the response's JSON), then ``search()`` whole and an API request for
   the same question, in turn: their paired difference is HTTP, auth and the route. With how
   many passages each question's words match (what ``$text`` scores).
4. A generated 300-page text PDF (``--pages``; bench/index.py's) on a real worker
   (``python -m worker``): the job until its chapter is ready, then until its
   ``search.status`` is ready (waiting for a claim, then chunking and embedding): passages,
   passages/s and CPU s a passage, against the in-process embedder (one thread) on some of
   the same passages.

Target: API p50 <= 50 ms at 100,000 passages. The machine is shared: read the figures with
the load average printed beside them. Prints figures; never passes or fails. ``--parts 1 2``
runs on a tree from before term vectors too (for figures before and after in one sitting).
Run: .venv/bin/python bench/search.py [--chunks 10000 100000] [--requests 200] [--pages 300]
[--text zipf real] [--parts 1 2 3 4]
(about 10 minutes on 2 shared cores under a load average of 5-7 with both kinds of text:
seeding and indexing 220,000 passages take 2-3 of them, indexing the 300-page chapter 1.5).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

# Heavy imports stay inside functions: an EmbeddingProcess is spawned, and spawn imports this
# script in the child (as __mp_main__), where they would only inflate its memory.
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.proc import tree_cpu_seconds  # noqa: E402  (light: os only)

SEARCH = "/api/v1/search"
K = 10
PER_CHAPTER = (300, 700)  # passages a chapter
CHAPTERS_PER_BOOK = 10
WORDS_PER_PASSAGE = (100, 140)  # ~160 tokens, ChunkLimits.target_tokens
PASSAGES_PER_PAGE = 2.6
ZIPF = 1.0  # word frequency ~ 1 / rank
QUERY_SKIP = 50  # a question's own words come from past the 50 most common words
BREAKDOWN_QUERIES = 50
EMBED_SAMPLE = 64  # passages the in-process embedder embeds for part 4's baseline
TEMPLATES = (
    "how does the {a} affect the {b}",
    "what is the {a} of the {b} {c}",
    "{a} {b} {c}",
    "why did the {a} {b} during the {c}",
    "where are {a} and {b} kept",
    "{a} and {b} in the {c} {d}",
    "explain the {a} {b}",
    "when was the {a} {b} first {c}",
    "which {a} uses {b} for {c}",
    "difference between {a} and {b}",
)


# --- Figures ---------------------------------------------------------------------------------


def pct(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (nearest rank) of ``values``."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


def p50_p99(values: Sequence[float]) -> str:
    return f"p50 {statistics.median(values):6.2f} ms, p99 {pct(values, 99):6.2f} ms"


def load() -> str:
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())


# --- Synthetic libraries -----------------------------------------------------------------------


class Writer:
    """Passages and questions of words drawn from the model's word list (frequency-ordered, as
    WordPiece lists are) with Zipf's frequencies."""

    def __init__(self, tokenizer_path: str, seed: int) -> None:
        import numpy as np

        vocab: dict[str, int] = json.loads(Path(tokenizer_path).read_text())["model"]["vocab"]
        words = [w for w, _ in sorted(vocab.items(), key=lambda item: item[1])]
        words = [w for w in words if w.isascii() and w.isalpha() and len(w) >= 3]
        self.words = np.array(words, dtype=object)
        weights = 1.0 / np.arange(1, len(words) + 1) ** ZIPF
        self._cdf = np.cumsum(weights) / weights.sum()
        tail = weights[QUERY_SKIP:]
        self._query_cdf = np.cumsum(tail) / tail.sum()
        self._np = np.random.default_rng(seed)
        self._rng = random.Random(seed)

    def _draw(self, n: int, cdf: Any = None, offset: int = 0) -> list[str]:
        import numpy as np

        cdf = self._cdf if cdf is None else cdf
        rows = np.minimum(cdf.searchsorted(self._np.random(n)), len(cdf) - 1) + offset
        words: list[str] = self.words[rows].tolist()
        return words

    def chapter_size(self) -> int:
        return self._rng.randint(*PER_CHAPTER)

    def passage(self) -> str:
        words = self._draw(self._rng.randint(*WORDS_PER_PASSAGE))
        sentences, start = [], 0
        while start < len(words):
            part = words[start : start + self._rng.randint(8, 22)]
            start += len(part)
            sentences.append(" ".join([part[0].capitalize(), *part[1:]]) + ".")
        return " ".join(sentences)

    def title(self, n: int = 3) -> str:
        return " ".join(self._draw(n, self._query_cdf, QUERY_SKIP)).capitalize()

    def question(self) -> str:
        template = self._rng.choice(TEMPLATES)
        a, b, c, d = self._draw(4, self._query_cdf, QUERY_SKIP)
        return template.format(a=a, b=b, c=c, d=d)


class RealText:
    """Passages and questions of bench/eval/retrieval.json: the evaluation PDFs cut into
    passages as the indexer cuts them (bench/index.py's chunk_documents), each chapter a run of
    consecutive passages from a random place (so a library of 100,000 repeats each passage
    about 50 times, spread over chapters), and the evaluation's questions in turn."""

    def __init__(self, spec: Any, seed: int) -> None:
        from bench.index import EVAL, chunk_documents, load_documents
        from service.retrieval.tokens import TokenCounter

        evaluation = json.loads(EVAL.read_text())
        documents = load_documents(evaluation)
        passages = chunk_documents(documents, TokenCounter(spec), header=True)
        self.passages = [p.chunk.content for p in passages]
        self.sections = [p.chunk.section or "" for p in passages]
        self.questions = [q["question"] for q in evaluation["questions"]]
        self._rng = random.Random(seed)
        self._cursor = 0
        self._asked = 0

    def chapter_size(self) -> int:
        self._cursor = self._rng.randrange(len(self.passages))
        return self._rng.randint(*PER_CHAPTER)

    def passage(self) -> str:
        self._cursor = (self._cursor + 1) % len(self.passages)
        return self.passages[self._cursor]

    def title(self, n: int = 3) -> str:
        return self.sections[self._cursor][:80] or "Untitled"

    def question(self) -> str:
        self._asked += 1
        return self.questions[(self._asked - 1) % len(self.questions)]


def term_vectors_available() -> bool:
    """Whether the code under test stores term vectors (older trees do not have them)."""
    try:
        import service.retrieval.terms  # noqa: F401
    except ImportError:
        return False
    return True


@dataclass
class Library:
    """One user's seeded passages: their ids row for row with the matrix of their vectors, and
    each chapter's keyword postings (when the code under test has term vectors)."""

    user: str
    chapters: int
    ids: list[str] = field(default_factory=list)
    matrix: Any = None  # (n, dimensions) float32, unit rows
    text: str = "zipf"
    sizes: list[int] = field(default_factory=list)  # passages a chapter, in order
    postings: list[Any] = field(default_factory=list)  # one bm25.Postings a chapter


def seed(
    db: Any, user: str, size: int, writer: Writer | RealText, spec: Any, seed_value: int
) -> Library:
    """``size`` passages of ``user`` in chapters of PER_CHAPTER passages, written as the worker
    writes chapters and chunks (service/store/chapters.py, worker/indexing/indexer.py): with
    their term vectors when the code under test has them."""
    import numpy as np

    from service.domain.job import new_id, utcnow
    from service.retrieval.ranking import vector_to_bson

    analyze = term_vectors_available()
    if analyze:
        from service.retrieval.bm25 import Postings
        from service.retrieval.terms import ANALYZER, term_vector

    rng = np.random.default_rng(seed_value)
    matrix = rng.standard_normal((size, spec.dimensions), dtype=np.float32)
    matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
    text = "real" if isinstance(writer, RealText) else "zipf"
    library = Library(user, 0, matrix=matrix, text=text)
    sizes, left = [], size
    while left > 0:
        n = writer.chapter_size()
        n = left if left - n < PER_CHAPTER[0] else n
        sizes.append(n)
        left -= n
    row, batch, chapters = 0, [], []
    now = utcnow()
    for number, n in enumerate(sizes):
        chapter_id, job_id = new_id(), new_id()
        book_id = f"book-{number // CHAPTERS_PER_BOOK + 1}"
        title = f"Chapter {number + 1}: {writer.title()}"
        filename = f"{book_id}-chapter-{number + 1}.pdf"
        total_pages = int((n - 1) / PASSAGES_PER_PAGE) + 1
        section = ""
        chapter_terms: list[bytes] = []
        for index in range(n):
            if index % 20 == 0:
                section = f"{number + 1}.{index // 20 + 1} {writer.title(2)}"
            page_start = int(index / PASSAGES_PER_PAGE) + 1
            page_end = min(total_pages, int((index + 0.9) / PASSAGES_PER_PAGE) + 1)
            content = writer.passage()
            chunk_id = new_id()
            library.ids.append(chunk_id)
            batch.append({
                "_id": chunk_id, "job_id": job_id, "chapter_id": chapter_id, "book_id": book_id,
                "user_id": user, "chunk_index": index, "content": content,
                "metadata": {"source_file": filename, "page_number": page_start,
                             "total_pages": total_pages},
                "page_start": page_start, "page_end": page_end, "section": section,
                "token_count": len(content) // 5, "created_at": now, "updated_at": now,
                "embedding": vector_to_bson(matrix[row]), "embedding_model": spec.name,
            })  # fmt: skip
            if analyze:
                chapter_terms.append(term_vector(content))
                batch[-1]["terms"] = chapter_terms[-1]
            row += 1
            if len(batch) == 2000:
                db.document_chunks.insert_many(batch, ordered=False)
                batch = []
        chapters.append({
            "chapter_id": chapter_id, "job_id": job_id, "user_id": user, "book_id": book_id,
            "title": title, "slug": f"chapter-{number + 1}", "order_index": number % CHAPTERS_PER_BOOK,
            "parent_id": None, "is_published": False, "is_preview_free": False,
            "content_mode": "pdf_file", "total_pages": total_pages, "source_file_id": new_id(),
            "source_filename": filename, "repaired": False,
            "pages": [{"page_number": p + 1, "image": None, "thumbnail": None, "has_text": True,
                       "text_source": "pdf", "ocr_confidence": None} for p in range(total_pages)],
            "pdf_key": None, "outline": [], "ocr_pages": 0, "pages_without_text": 0,
            "search": {"status": "ready", "requested_at": now, "attempts": 1, "started_at": now,
                       "heartbeat_at": now, "model": spec.name, "chunks": n, "embedded": n,
                       "indexed_at": now, "lease_id": None, "error": None},
            "created_at": now,
        })  # fmt: skip
        if analyze:
            chapters[-1]["search"]["terms"] = ANALYZER
            library.postings.append(Postings.from_stored(chapter_terms))
        library.sizes.append(n)
    if batch:
        db.document_chunks.insert_many(batch, ordered=False)
    db.book_chapters.insert_many(chapters)
    library.chapters = len(chapters)
    return library


# --- Processes -------------------------------------------------------------------------------


@contextlib.contextmanager
def process(
    command: list[str], env: dict[str, str], log: Path
) -> Iterator[subprocess.Popen[bytes]]:
    """A child in its own process group (it dies with us); on exit it is stopped, then anything
    left in its group is killed."""
    from devstack.embedded import die_with_parent, stop

    with open(log, "ab") as out:
        child = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True, preexec_fn=die_with_parent,
        )  # fmt: skip
    try:
        yield child
    finally:
        stop(child)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(child.pid, signal.SIGKILL)


def tail(log: Path, lines: int = 20) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    return "(no log)"


class Api:
    """Sequential searches over one keep-alive connection to the API."""

    def __init__(self, port: int) -> None:
        import http.client

        self._connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)

    def search(self, token: str, query: str) -> tuple[float, int]:
        """Milliseconds for one hybrid search of ``K``, and how many results it returned."""
        body = json.dumps({"query": query, "k": K, "mode": "hybrid"})
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        start = time.perf_counter()
        self._connection.request("POST", SEARCH, body, headers)
        response = self._connection.getresponse()
        data = response.read()
        elapsed = (time.perf_counter() - start) * 1000
        if response.status != 200:
            raise RuntimeError(f"search: HTTP {response.status}: {data[:300]!r}")
        return elapsed, len(json.loads(data)["results"])

    def close(self) -> None:
        self._connection.close()


# --- 1 and 2: the API against raw, request by request ------------------------------------------


@dataclass
class Timings:
    """Milliseconds, one entry a question."""

    api: list[float] = field(default_factory=list)
    results: list[int] = field(default_factory=list)
    vector: list[float] = field(default_factory=list)
    text: list[float] = field(default_factory=list)
    bm25: list[float] = field(default_factory=list)
    fuse: list[float] = field(default_factory=list)
    embed: list[float] = field(default_factory=list)
    cold_ms: float = 0.0

    @property
    def keyword(self) -> list[float]:
        """The raw keyword search of the kind the API runs: BM25 when it has term vectors."""
        return self.bm25 or self.text

    @property
    def raw(self) -> list[float]:
        return [v + t + f for v, t, f in zip(self.vector, self.keyword, self.fuse, strict=True)]


def raw_search(
    collection: Any, library: Library, chapter_ids: list[str], query: str, vector: Any
) -> tuple[float, float, float | None, float]:
    """The search without the service (ms): exact top-k over one matrix, the same ``$text``
    query, BM25 over the chapters' postings in this process (None without term vectors), the
    fusion (of the vector list with BM25's, or with ``$text``'s)."""
    import numpy as np

    from service.retrieval.ranking import KEYWORD_DEPTH, VECTOR_DEPTH, hybrid, top_k

    depth = max(K, KEYWORD_DEPTH)
    start = time.perf_counter()
    rows, _ = top_k(library.matrix, vector, max(K, VECTOR_DEPTH))
    nearest = [library.ids[row] for row in rows]
    searched = time.perf_counter()
    found = collection.find(
        {"user_id": library.user, "$text": {"$search": query}, "chapter_id": {"$in": chapter_ids}},
        {"_id": 1, "score": {"$meta": "textScore"}},
    )
    found = found.sort([("score", {"$meta": "textScore"})]).limit(depth)
    keyword = [str(doc["_id"]) for doc in found]
    matched = time.perf_counter()
    bm25_ms = None
    if library.postings:
        from service.retrieval import bm25
        from service.retrieval.terms import query_terms

        begin = time.perf_counter()
        which, rows, _ = bm25.top_k(library.postings, query_terms(query), depth)
        starts = np.cumsum([0, *library.sizes])
        keyword = [library.ids[i] for i in (starts[which] + rows).tolist()]
        bm25_ms = (time.perf_counter() - begin) * 1000
    begin = time.perf_counter()
    hybrid(nearest, keyword)[:K]
    fused = time.perf_counter()
    return (searched - start) * 1000, (matched - searched) * 1000, bm25_ms, (fused - begin) * 1000


async def measure(
    api: Api,
    token: str,
    collection: Any,
    library: Library,
    queries: list[str],
    vectors: Any,
    embeddings: Any,
    cold_query: str,
) -> Timings:
    """Part 1 and 2 for one library. HTTP and PyMongo's sync calls block this loop on purpose:
    nothing else runs on it, and the requests are sequential."""
    timings = Timings()
    timings.cold_ms, _ = api.search(token, cold_query)
    chapter_ids = collection.database.book_chapters.distinct(
        "chapter_id", {"user_id": library.user}
    )
    for index, (query, vector) in enumerate(zip(queries, vectors, strict=True)):
        if index % 2:  # every other question, raw first: neither side always finds it cached
            raw = raw_search(collection, library, chapter_ids, query, vector)
            elapsed, count = api.search(token, query)
        else:
            elapsed, count = api.search(token, query)
            raw = raw_search(collection, library, chapter_ids, query, vector)
        start = time.perf_counter()
        await embeddings.embed([query], "query")
        timings.embed.append((time.perf_counter() - start) * 1000)
        timings.api.append(elapsed)
        timings.results.append(count)
        vector_ms, text_ms, bm25_ms, fuse_ms = raw
        timings.vector.append(vector_ms)
        timings.text.append(text_ms)
        if bm25_ms is not None:
            timings.bm25.append(bm25_ms)
        timings.fuse.append(fuse_ms)
    return timings


# --- 3: where the API's time goes -------------------------------------------------------------


class FixedEmbedding:
    """An embedding process stand-in that returns a question's precomputed vector."""

    def __init__(self, vector: Any) -> None:
        self.vector = vector

    async def embed(self, texts: Sequence[str], kind: str) -> Any:
        return self.vector.reshape(1, -1)


STEPS = (
    "rate limit (Redis)",
    "scope: ChapterStore.searchable",
    "keyword: _keyword_search (BM25, cached)",
    "  query_terms + bm25.top_k alone",
    "  $text: ChunkStore.keyword (the fallback)",
    "  the same $text without chapter_id $in",
    "vector: _vector_search (cached, no embed)",
    "  gather of the chapters' cached scopes",
    "  top_k_across their matrices",
    "fuse: hybrid",
    "results: ChunkStore.results",
    "thumbnails: ChapterStore.thumbnails",
    "snippets",
    "response JSON (msgspec)",
    "search() whole, embedding included",
    "API request, paired with search() whole",
)


@dataclass
class Breakdown:
    """Milliseconds a question for each of ``STEPS``; the in-process cold load of the
    library's vectors; how many passages each question's words match."""

    steps: dict[str, list[float]] = field(default_factory=lambda: {name: [] for name in STEPS})
    cold_ms: float = 0.0
    matched: list[int] = field(default_factory=list)


async def breakdown(
    ctx: Any, api: Api, token: str, library: Library, queries: list[str], vectors: Any
) -> Breakdown:
    """Each step of ``service/jobs/search.py`` timed on its own, in this process, with the
    service's own functions (the keyword and vector paths' parts replayed as they run them),
    then ``search()`` whole and an API request for the same question, in turn."""
    import msgspec

    from service.api.schemas.search import SearchOut, SearchResultOut
    from service.jobs import search as use_case
    from service.retrieval import bm25
    from service.retrieval.ranking import KEYWORD_DEPTH, VECTOR_DEPTH, hybrid, top_k_across
    from service.retrieval.terms import query_terms

    out = Breakdown()
    user = library.user
    chunks = ctx.store.collections.chunks
    chapters = await ctx.store.chapters.searchable(user)
    stub = SimpleNamespace(**{**vars(ctx), "embeddings": FixedEmbedding(vectors[0])})
    start = time.perf_counter()
    await use_case._vector_search(
        stub, user, use_case._embed(stub, queries[0]), chapters, VECTOR_DEPTH
    )
    out.cold_ms = (time.perf_counter() - start) * 1000
    laps = iter(out.steps.values())

    def lap(began: float) -> float:
        now = time.perf_counter()
        next(laps).append((now - began) * 1000)
        return now

    for query, vector in zip(queries, vectors, strict=True):
        laps = iter(out.steps.values())
        stub.embeddings = FixedEmbedding(vector)
        t = time.perf_counter()
        await ctx.limiter.hit(f"search-bench:{user}", 100_000, "searches")
        t = lap(t)
        chapters = await ctx.store.chapters.searchable(user)
        ids = [chapter["chapter_id"] for chapter in chapters]
        t = lap(t)
        found = await use_case._keyword_search(stub, user, query, chapters, KEYWORD_DEPTH)
        keyword = [i for i, _ in found]
        t = lap(t)
        scopes = await asyncio.gather(
            *(use_case._chapter_index(stub, user, chapter) for chapter in chapters)
        )
        t = time.perf_counter()
        if all(scope.postings is not None for scope in scopes):
            bm25.top_k([scope.postings for scope in scopes], query_terms(query), KEYWORD_DEPTH)
        t = lap(t)
        await ctx.store.chunks.keyword(user, query, ids, KEYWORD_DEPTH)
        t = lap(t)
        unscoped = chunks.find(
            {"user_id": user, "$text": {"$search": query}},
            {"_id": 1, "score": {"$meta": "textScore"}},
        )
        await unscoped.sort([("score", {"$meta": "textScore"})]).limit(KEYWORD_DEPTH).to_list()
        t = lap(t)
        nearest = await use_case._vector_search(
            stub, user, use_case._embed(stub, query), chapters, VECTOR_DEPTH
        )
        t = lap(t)
        scopes = await asyncio.gather(
            *(use_case._chapter_index(stub, user, chapter) for chapter in chapters)
        )
        t = lap(t)
        top_k_across([scope.matrix for scope in scopes], vector, VECTOR_DEPTH)
        t = lap(t)
        ranked = hybrid([i for i, _ in nearest], keyword)[:K]
        t = lap(t)
        by_id = await ctx.store.chunks.results(user, [i for i, _ in ranked])
        t = lap(t)
        hits = [by_id[i] for i, _ in ranked if i in by_id]
        await ctx.store.chapters.thumbnails([(h["chapter_id"], h["page_start"] - 1) for h in hits])
        t = lap(t)
        snippets = [use_case.snippet(hit["content"], query) for hit in hits]
        t = lap(t)
        shown = [
            SearchResultOut(
                chunk_id=h["_id"], chapter_id=h["chapter_id"], book_id=h["book_id"],
                job_id=h["job_id"], chapter_title="t", page_start=h["page_start"],
                page_end=h["page_end"], page_number=h["page_start"], section=h.get("section"),
                content=h["content"], snippet=s, score=0.5, thumbnail_url=None,
            )
            for h, s in zip(hits, snippets, strict=True)
        ]  # fmt: skip
        msgspec.json.encode(
            SearchOut(results=shown, mode=use_case.Mode.hybrid, model=ctx.model.name)
        )
        t = lap(t)
        await use_case.search(ctx, user, use_case.SearchRequest(query=query, k=K))
        t = lap(t)
        api.search(token, query)  # blocks the loop on purpose, as in measure()
        lap(t)
        out.matched.append(
            await chunks.count_documents({"user_id": user, "$text": {"$search": query}})
        )
    return out


# --- 4: a chapter's index time on a real worker -------------------------------------------------


async def index_time(
    bed: Any, store: Any, queue: Any, spec: Any, embedder: Any, pages: int
) -> None:
    from bench.bed import bench_env, submit
    from bench.index import generated_pdf
    from bench.pipeline import TEXT_ONLY, wait_done
    from service.retrieval.chunking import Chunk, passage_text

    path = bed.tmp / f"{pages}-pages.pdf"
    generated_pdf(path, pages=pages)
    log = bed.tmp / "worker.log"
    chapters = store.collections.chapters
    with process([sys.executable, "-m", "worker"], bench_env(bed), log) as worker:
        await asyncio.sleep(1.5)  # connected and idle
        if worker.poll() is not None:
            raise RuntimeError(f"the worker exited:\n{tail(log)}")
        start = time.perf_counter()
        job_id = await submit(store, queue, path.read_bytes(), path.name, TEXT_ONLY)
        job = await wait_done(store, job_id)
        ready_at = time.perf_counter()
        if job["status"] != "completed":
            raise RuntimeError(f"the job {job['status']}: {job.get('error')}\n{tail(log)}")
        cpu_at_ready = tree_cpu_seconds(worker.pid)
        deadline = ready_at + 900
        while True:
            chapter = await chapters.find_one({"job_id": job_id}, {"chapter_id": 1, "title": 1, "search": 1, "created_at": 1})  # fmt: skip
            search = (chapter or {}).get("search") or {}
            if search.get("status") in ("ready", "failed") or time.perf_counter() > deadline:
                break
            await asyncio.sleep(0.05)
        indexed_at = time.perf_counter()
        cpu = tree_cpu_seconds(worker.pid) - cpu_at_ready
        print(f"\n4. a generated {pages}-page text PDF (content mode pdf_file) on a real worker "
              f"(python -m worker, EMBEDDING_THREADS=1, embedding process at nice +10); {load()}")  # fmt: skip
        print(f"   chapter ready: enqueue -> job completed {ready_at - start:.1f} s "
              f"(claim -> completed {(job['completed_at'] - job['started_at']).total_seconds():.1f} s)")  # fmt: skip
        if search.get("status") != "ready":
            print(f"   NOT indexed: search {search.get('status')} after {indexed_at - ready_at:.0f} s "
                  f"({search.get('embedded')}/{search.get('chunks')} passages embedded; "
                  f"{search.get('error')})\n{tail(log)}")  # fmt: skip
            return
        passages = int(search["chunks"])
        waited = (search["started_at"] - chapter["created_at"]).total_seconds()
        indexing = (search["indexed_at"] - search["started_at"]).total_seconds()
        total = indexed_at - ready_at
        print(f"   chapter ready -> search ready {total:.1f} s (seen by polling every 50 ms): "
              f"waiting for a claim {waited:.1f} s, claim -> ready {indexing:.1f} s "
              f"(chunking, first-batch model load, embedding, writes)")  # fmt: skip
        print(f"   {passages} passages: {passages / total:.1f} passages/s from chapter ready, "
              f"{passages / indexing:.1f} from claim; worker tree {cpu / passages:.3f} CPU s a passage")  # fmt: skip
        docs = await store.collections.chunks.find(
            {"chapter_id": chapter["chapter_id"]},
            {"_id": 0, "chunk_index": 1, "content": 1, "page_start": 1, "page_end": 1, "section": 1, "token_count": 1},
        ).sort("chunk_index", 1).to_list()  # fmt: skip
    texts = [passage_text(Chunk(**doc), chapter.get("title")) for doc in docs[:EMBED_SAMPLE]]
    begin, cpu_begin = time.perf_counter(), time.process_time()
    embedder.embed(texts, "passage")
    raw_rate = len(texts) / (time.perf_counter() - begin)
    raw_cpu = (time.process_time() - cpu_begin) / len(texts)
    print(f"   baseline: in-process embedder, 1 thread, nice 0, the first {len(texts)} of these passages: "
          f"{raw_rate:.1f} passages/s, {raw_cpu:.3f} CPU s a passage; ratio worker (from claim) / raw "
          f"{passages / indexing / raw_rate:.2f} in passages/s, {raw_cpu / (cpu / passages):.2f} in CPU")  # fmt: skip


# --- The run ----------------------------------------------------------------------------------


async def run(bed: Any, args: argparse.Namespace) -> None:
    import numpy as np
    import pymongo
    from pymongo import AsyncMongoClient

    from bench.bed import DB, PROJECT, bench_env, bench_settings, connected, wait_http
    from devstack.api import api_command
    from devstack.embedded import free_port
    from devstack.token import emulator_token
    from indexes.spec import specification
    from indexes.sync import sync
    from service.api.app import QUERIES_QUEUED, QUERY_TIME_LIMIT_S
    from service.limits.rate_limit import RateLimiter
    from service.retrieval.embedder import Embedder
    from service.retrieval.model import load_model_spec
    from service.retrieval.process import EmbeddingProcess
    from service.retrieval.ranking import ScopeCache

    spec = load_model_spec(None)
    writers: dict[str, Writer | RealText] = {}
    if "zipf" in args.text:
        writers["zipf"] = Writer(spec.tokenizer_path, seed=7)
    if "real" in args.text:
        writers["real"] = RealText(spec, seed=7)
    print(f"model {spec.name}, {spec.dimensions}-d; {load()} on {os.cpu_count()} cores (shared); "
          f"term vectors stored: {term_vectors_available()}")  # fmt: skip
    sync_client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(bed.mongod.url)
    try:
        db = sync_client[DB]
        start = time.perf_counter()
        first = next(iter(writers.values()))
        warm = seed(db, "warm-up", 50, first, spec, 1)
        libraries = [
            seed(db, f"{text}-{n}", n, writer, spec, n)
            for text, writer in writers.items()
            for n in args.chunks
        ]
        seeded = time.perf_counter()
        total = sum(len(lib.ids) for lib in libraries) + 50
        print(f"seeded {total:,} passages in {sum(lib.chapters for lib in libraries) + 1} "
              f"chapters in {seeded - start:.0f} s", end="")  # fmt: skip
        # Built after the passages are in (faster than index by index as they come), by a
        # client without a socket timeout, as `python -m indexes sync` builds them.
        index_client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(bed.mongod.url)
        try:
            await sync(index_client[DB], specification(bench_settings(bed)))
        finally:
            await index_client.close()
        print(f"; indexes.sync (the $text index built) {time.perf_counter() - seeded:.0f} s")
        async with connected(bed) as (settings, store, queue):
            questions = {
                text: [writer.question() for _ in range(args.requests)]
                for text, writer in writers.items()
            }
            embedder = Embedder(spec, threads=1)
            embedder.embed(["warm up"], "query")
            embed_local: list[float] = []
            vectors: dict[str, list[Any]] = {}
            for text, queries in questions.items():
                vectors[text] = []
                for query in queries:
                    begin = time.perf_counter()
                    vectors[text].append(embedder.embed([query], "query")[0])
                    embed_local.append((time.perf_counter() - begin) * 1000)
            port = free_port()
            env = bench_env(bed, PORT=str(port), SEARCH_RATE_LIMIT_PER_MINUTE="100000")
            log = bed.tmp / "api.log"
            results: list[tuple[Library, Timings]] = []
            embeddings = EmbeddingProcess(
                spec, threads=settings.embedding_threads, time_limit_s=QUERY_TIME_LIMIT_S,
                max_queued=QUERIES_QUEUED, texts_per_request=1,
            )  # fmt: skip
            async with embeddings:
                await embeddings.embed(["warm up"], "query")
                ctx = SimpleNamespace(
                    settings=settings.model_copy(update={"search_rate_limit_per_minute": 100_000}),
                    store=store, limiter=RateLimiter(queue), model=spec, embeddings=embeddings,
                    vectors=ScopeCache(settings.search_cache_mb * 1024 * 1024),
                )  # fmt: skip
                count = min(BREAKDOWN_QUERIES, args.requests)
                parts: list[Breakdown] = []
                with process(api_command(port, log_level="warning"), env, log) as api_process:
                    try:
                        wait_http(port, timeout=60)
                    except RuntimeError:
                        raise RuntimeError(f"the API did not start:\n{tail(log)}") from None
                    api = Api(port)
                    try:
                        first_ms, _ = api.search(emulator_token(warm.user, PROJECT), "warm up")
                        for library in libraries:
                            # Each library measured then broken down before the next: the
                            # API's cache holds one 100,000-passage library, not two.
                            token = emulator_token(library.user, PROJECT)
                            queries, embedded = questions[library.text], vectors[library.text]
                            results.append((library, await measure(
                                api, token, db.document_chunks, library, queries, embedded,
                                embeddings, writers[library.text].question(),
                            )))  # fmt: skip
                            print(f"  measured {library.user}; {load()}")
                            if 3 in args.parts:
                                parts.append(await breakdown(
                                    ctx, api, token, library, queries[:count],
                                    np.array(embedded[:count]),
                                ))  # fmt: skip
                                ctx.vectors = ScopeCache(settings.search_cache_mb * 1024 * 1024)
                                print(f"  broken down {library.user}; {load()}")
                    finally:
                        api.close()
                    api_rss = tree_rss_mb(api_process.pid)
            print_api(results, first_ms, embed_local, api_rss)
            if parts:
                print_breakdown(results, parts, count)
            if 4 in args.parts:
                await index_time(bed, store, queue, spec, embedder, args.pages)
    finally:
        sync_client.close()


def tree_rss_mb(pid: int) -> float:
    from bench.pipeline import tree_rss_kb

    return tree_rss_kb(pid) / 1024


def print_api(
    results: list[tuple[Library, Timings]], first_ms: float, embed_local: list[float], rss: float
) -> None:
    print("\n1. POST /api/v1/search through the API (granian, 1 worker, emulator tokens), "
          f"hybrid, k={K}, sequential, one question a request")  # fmt: skip
    print(f"   very first search (a 50-passage library; starts the API's embedding process): "
          f"{first_ms:.0f} ms")  # fmt: skip
    for library, t in results:
        print(f"   {library.text:4} {len(library.ids):>7,} passages, {library.chapters} chapters: {p50_p99(t.api)} "
              f"over {len(t.api)} requests; cold first (loads the vectors) {t.cold_ms:.0f} ms; "
              f"results a search: median {statistics.median(t.results):.0f}")  # fmt: skip
    print(f"   API process tree RSS after: {rss:.0f} MB (API + its embedding process)")
    print("\n2. raw baselines on the same questions, interleaved with the API's requests")
    print(f"   query embedding, in-process embedder (computed once, outside the raw timings): {p50_p99(embed_local)}")  # fmt: skip
    for library, t in results:
        raw_p50, api_p50, embed_p50 = (statistics.median(v) for v in (t.raw, t.api, t.embed))
        print(f"   {library.text} text, {len(library.ids):>7,} passages:")
        print(f"     raw vector (numpy top_k over one matrix) {p50_p99(t.vector)}")
        print(f"     raw $text (PyMongo, the service's query) {p50_p99(t.text)}")
        if t.bm25:
            print(f"     raw BM25 (bm25.top_k, chapters' postings) {p50_p99(t.bm25)}")
        print(f"     raw fusion (hybrid)                      {p50_p99(t.fuse)}")
        print(
            f"     raw sum (vector + {'BM25' if t.bm25 else '$text'} + fusion)      {p50_p99(t.raw)}"
        )
        print(f"     query embedding, EmbeddingProcess as the API's: {p50_p99(t.embed)} "
              f"= {embed_p50 / api_p50:.0%} of the API's p50")  # fmt: skip
        print(f"     ratio API p50 / raw p50 {api_p50 / raw_p50:.2f}; "
              f"API p50 / (raw + embedding) p50 {api_p50 / (raw_p50 + embed_p50):.2f}; "
              f"target API p50 <= 50 ms: {api_p50:.1f} ms")  # fmt: skip


def print_breakdown(
    results: list[tuple[Library, Timings]], parts: list[Breakdown], count: int
) -> None:
    print(f"\n3. where the API's time goes: the steps of service/jobs/search.py in this process "
          f"(uvloop, the same mongod), over {count} of the questions")  # fmt: skip
    for (library, _), part in zip(results, parts, strict=True):
        print(f"   {library.text} text, {len(library.ids):,} passages in {library.chapters} chapters; a question's words "
              f"match a median {statistics.median(part.matched):,.0f} passages (max {max(part.matched):,}); "
              f"cold load of their vectors in-process {part.cold_ms:.0f} ms")  # fmt: skip
        for name, values in part.steps.items():
            print(f"     {name:42} {p50_p99(values)}")
        paired = [
            api - whole
            for api, whole in zip(part.steps[STEPS[-1]], part.steps[STEPS[-2]], strict=True)
        ]
        print(f"     {'API less search(), paired, median':42} {statistics.median(paired):6.2f} ms "
              "(HTTP, auth, the route: thumbnails, URLs, JSON; uvloop both)")  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--chunks", type=int, nargs="+", default=[10_000, 100_000],
                        help="library sizes, one user each (passages)")  # fmt: skip
    parser.add_argument("--requests", type=int, default=200, help="searches a library")
    parser.add_argument("--pages", type=int, default=300, help="pages of part 4's PDF")
    parser.add_argument("--text", nargs="+", default=["zipf", "real"], choices=["zipf", "real"],
                        help="libraries of synthetic Zipf text, of the evaluation PDFs' passages")  # fmt: skip
    parser.add_argument("--parts", type=int, nargs="+", default=[1, 2, 3, 4], choices=[1, 2, 3, 4],
                        help="1 and 2 always run together; 3 needs this tree's search")  # fmt: skip
    args = parser.parse_args()
    import uvloop

    from bench.bed import servers

    with servers("pcj-bench-search-") as bed:
        uvloop.run(run(bed, args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
