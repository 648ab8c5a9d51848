"""Retrieval figures: embedding throughput, search quality, a 300-page chapter, exact top-k.

1. throughput: the same passages embedded by the EmbeddingProcess and by the embedder (raw
   onnxruntime) in this process, same threads, alternating rounds in the same run. Target:
   process / in-process >= 0.85. CPU seconds a passage are printed too (they hold still when
   other work shares the machine; passages/s do not).
2. quality on bench/eval/retrieval.json (real PDFs from Debian doc packages, questions written
   in other words than their pages): the documents are chunked (PyMuPDF get_text(), the outline),
   embedded through the EmbeddingProcess and stored in a real mongod (started here on a free
   port, deleted after) with a $text index whose first field is user_id. Every question is
   searched over all documents (one user's library). A hit is a returned passage of the right
   document whose page span covers an answer page. Methods: keyword ($text, by textScore),
   vector (exact numpy top-k), hybrid (RRF of both lists), and the baseline: $text over whole
   pages, one document per page (today's chunks). Tries: passages of 160 and 210 tokens, with
   and without their header (chapter title + section); the fusion constant, the keyword list's
   weight and depth; every figure also on the odd and even halves of the questions.
3. a generated 300-page text PDF: text extraction, chunking and embedding times.
4. exact top-10 over 10,000 and 100,000 random 384-d vectors.

Needs: apt-get install -y bash-doc r-doc-pdf texlive-latex-base-doc (the PDFs of the evaluation).
Prints figures; never passes or fails. Run: .venv/bin/python bench/index.py [--threads 2]
(8-10 minutes on 2 shared cores, most of it embedding 3 x ~1,800 passages; ``--parts 1 4`` or
``--variants 160h`` for less).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Imports stay inside functions where they are heavy: the embedding process is spawned, and
# spawn imports this script in the child (as __mp_main__): PyMuPDF there would inflate its RSS.
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.proc import cpu_seconds  # noqa: E402  (light: os only)

EVAL = ROOT / "bench" / "eval" / "retrieval.json"
USER = "bench-user"


@dataclass
class Passage:
    document: str
    chunk: Any  # service.retrieval.chunking.Chunk
    text: str  # what is embedded


def load_documents(
    evaluation: dict[str, Any],
) -> list[tuple[dict[str, Any], list[tuple[int, str]], list[Any]]]:
    import hashlib

    import pymupdf

    out = []
    for meta in evaluation["documents"]:
        path = Path(meta["path"])
        if not path.exists():
            sys.exit(f"{path} is missing: apt-get install -y {meta['package']}")
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if digest != meta["sha256"]:
            print(f"  note: {path} differs from the evaluated file (sha256 {digest[:12]})")
        with pymupdf.open(path) as doc:
            pages = [(index + 1, page.get_text()) for index, page in enumerate(doc)]
            outline = doc.get_toc()
        out.append((meta, pages, outline))
    return out


def chunk_documents(documents, counter, *, header: bool) -> list[Passage]:
    from service.retrieval.chunking import ChunkLimits, chunk_chapter, passage_text

    limits = ChunkLimits(max_tokens=counter.budget("passage"))
    passages = []
    for meta, pages, outline in documents:
        title = meta["title"]
        for chunk in chunk_chapter(
            pages, counter.offsets, outline=outline, title=title, limits=limits
        ):
            passages.append(Passage(meta["id"], chunk, passage_text(chunk, title, header=header)))
    return passages


# 1. Throughput.


async def throughput(spec, texts: Sequence[str], threads: int, rounds: int = 5) -> dict[str, float]:
    from service.retrieval.embedder import Embedder
    from service.retrieval.process import EmbeddingProcess

    embedder = Embedder(spec, threads=threads)
    embedder.embed(texts[:8], "passage")  # warm up
    local, remote, local_cpu, remote_cpu = [], [], [], []
    async with EmbeddingProcess(spec, threads=threads) as process:
        await process.embed(texts[:8], "passage")
        for _ in range(rounds):
            start, cpu = time.perf_counter(), time.process_time()
            embedder.embed(texts, "passage")
            local.append(len(texts) / (time.perf_counter() - start))
            local_cpu.append((time.process_time() - cpu) / len(texts))
            start, cpu, child = time.perf_counter(), time.process_time(), cpu_seconds([process.pid])
            await process.embed(texts, "passage")
            remote.append(len(texts) / (time.perf_counter() - start))
            spent = (time.process_time() - cpu) + cpu_seconds([process.pid]) - child
            remote_cpu.append(spent / len(texts))
    return {
        "local": statistics.median(local),
        "process": statistics.median(remote),
        "local_cpu": statistics.median(local_cpu),
        "process_cpu": statistics.median(remote_cpu),
    }


# 2. Quality.


def hit_rank(results: Sequence[tuple[str, int, int]], question: dict[str, Any]) -> int | None:
    """1-based rank of the first result (document, page_start, page_end) that answers."""
    for rank, (document, first, last) in enumerate(results, start=1):
        if document == question["document"] and any(first <= p <= last for p in question["pages"]):
            return rank
    return None


def scores(ranks: Sequence[int | None]) -> tuple[float, float, float]:
    """hit@1, hit@5, MRR@10."""
    n = len(ranks)
    hit1 = sum(1 for r in ranks if r == 1) / n
    hit5 = sum(1 for r in ranks if r is not None and r <= 5) / n
    mrr = sum(1 / r for r in ranks if r is not None and r <= 10) / n
    return hit1, hit5, mrr


@dataclass
class Variant:
    """One way of making passages: chunk target and header; its searches' result lists."""

    target: int
    header: bool
    passages: int = 0
    embed_s: float = 0.0
    where: list[tuple[str, int, int]] | None = None
    keyword: list[list[int]] | None = None  # $text, by textScore
    bm25: list[list[int]] | None = None  # BM25 over the passages' term vectors
    vector: list[list[int]] | None = None
    postings: list[Any] | None = None  # one Postings a document, for the BM25 grid

    @property
    def label(self) -> str:
        return f"{self.target} tokens, {'header' if self.header else 'content only'}"


async def quality(
    spec, counter, evaluation, documents, threads: int, db, variants: list[Variant]
) -> dict[str, Any]:
    import numpy as np
    import pymongo

    from service.retrieval.bm25 import Postings
    from service.retrieval.chunking import ChunkLimits, chunk_chapter, passage_text
    from service.retrieval.process import EmbeddingProcess
    from service.retrieval.ranking import top_k, vector_to_bson, vectors_from_bson
    from service.retrieval.terms import term_vector

    questions = evaluation["questions"]
    report: dict[str, Any] = {}
    async with EmbeddingProcess(spec, threads=threads) as process:
        query_vectors = await process.embed([q["question"] for q in questions], "query")

        # Baseline: one document per page (today's chunks), $text.
        pages_collection = db.pages
        pages_collection.insert_many(
            [
                {
                    "user_id": USER,
                    "document": meta["id"],
                    "page": number,
                    "content": " ".join(text.split()),
                }
                for meta, pages, _ in documents
                for number, text in pages
            ]
        )
        pages_collection.create_index([("user_id", pymongo.ASCENDING), ("content", pymongo.TEXT)])
        baseline = []
        for question in questions:
            found = (
                pages_collection.find(
                    {"user_id": USER, "$text": {"$search": question["question"]}},
                    {"score": {"$meta": "textScore"}, "document": 1, "page": 1},
                )
                .sort([("score", {"$meta": "textScore"})])
                .limit(10)
            )
            baseline.append(
                hit_rank([(d["document"], d["page"], d["page"]) for d in found], question)
            )
        report["baseline"] = baseline

        for variant in variants:
            limits = ChunkLimits(
                max_tokens=counter.budget("passage"),
                target_tokens=variant.target,
                overlap_tokens=variant.target * 3 // 20,
            )
            passages = []
            for meta, pages, outline in documents:
                title = meta["title"]
                for chunk in chunk_chapter(
                    pages,
                    counter.offsets,
                    outline=outline,
                    title=title,
                    header=variant.header,
                    limits=limits,
                ):
                    passages.append(
                        Passage(
                            meta["id"], chunk, passage_text(chunk, title, header=variant.header)
                        )
                    )
            start = time.perf_counter()
            vectors = await process.embed([p.text for p in passages], "passage")
            variant.embed_s = time.perf_counter() - start
            variant.passages = len(passages)
            report["memory"] = process.memory()
            collection = db[f"passages_{variant.target}_{int(variant.header)}"]
            collection.insert_many(
                [
                    {
                        "_id": i,
                        "user_id": USER,
                        "document": p.document,
                        "chunk_index": p.chunk.chunk_index,
                        "content": p.chunk.content,
                        "section": p.chunk.section,
                        "page_start": p.chunk.page_start,
                        "page_end": p.chunk.page_end,
                        "embedding": vector_to_bson(vectors[i]),
                        "embedding_model": spec.name,
                    }
                    for i, p in enumerate(passages)
                ]
            )
            collection.create_index([("user_id", pymongo.ASCENDING), ("content", pymongo.TEXT)])
            # Searched as the API would: the user's vectors read back from MongoDB.
            stored = list(
                collection.find(
                    {"user_id": USER, "embedding_model": spec.name}, {"embedding": 1}
                ).sort("_id", 1)
            )
            ids = [d["_id"] for d in stored]
            matrix = vectors_from_bson([d["embedding"] for d in stored], spec.dimensions)
            assert np.array_equal(matrix, vectors)
            variant.where = [(p.document, p.chunk.page_start, p.chunk.page_end) for p in passages]
            # BM25 as the API runs it: each document's passages one chapter's postings, built
            # from the term vectors the indexer stores; the library is the scope.
            documents_in_order = list(dict.fromkeys(p.document for p in passages))
            variant.postings = [
                Postings.from_stored(
                    [term_vector(p.chunk.content) for p in passages if p.document == d]
                )
                for d in documents_in_order
            ]
            variant.bm25 = [bm25_ranking(variant.postings, q["question"], 100) for q in questions]
            variant.keyword, variant.vector = [], []
            for question, query in zip(questions, query_vectors, strict=True):
                found = (
                    collection.find(
                        {"user_id": USER, "$text": {"$search": question["question"]}},
                        {"score": {"$meta": "textScore"}},
                    )
                    .sort([("score", {"$meta": "textScore"})])
                    .limit(100)
                )
                variant.keyword.append([d["_id"] for d in found])
                rows, _ = top_k(matrix, query, 100)
                variant.vector.append([ids[r] for r in rows])
    return report


def bm25_ranking(postings: list[Any], question: str, depth: int, **options: float) -> list[int]:
    """Passage numbers (rows of the whole library, documents in order) by BM25, best first."""
    import numpy as np

    from service.retrieval import bm25
    from service.retrieval.terms import query_terms

    starts = np.cumsum([0, *(chapter.passages for chapter in postings)])
    which, rows, _ = bm25.top_k(postings, query_terms(question), depth, **options)
    return (starts[which] + rows).tolist()


def variant_ranks(
    variant: Variant, questions, lists: list[list[int]], subset: int | None = None
) -> list[int | None]:
    """Hit ranks of the first 10 of each list; ``subset`` 0/1: odd/even questions only."""
    return [
        hit_rank([variant.where[i] for i in found[:10]], question)
        for index, (found, question) in enumerate(zip(lists, questions, strict=True))
        if subset is None or index % 2 == subset
    ]


def fused(
    variant: Variant, keyword: list[list[int]] | None = None, **options: Any
) -> list[list[int]]:
    """Hybrid lists of ``variant``: its vector lists fused with ``keyword`` ($text's by default)."""
    from service.retrieval.ranking import hybrid

    return [
        [i for i, _ in hybrid(kw, vec, **options)]
        for kw, vec in zip(keyword or variant.keyword, variant.vector, strict=True)
    ]


def print_quality(evaluation, documents, report, variants: list[Variant]) -> None:
    from service.retrieval.ranking import HYBRID_K, KEYWORD_DEPTH, KEYWORD_WEIGHT, VECTOR_DEPTH

    questions = evaluation["questions"]
    main = variants[0]
    textbook = {"k": 60, "keyword_weight": 1.0, "keyword_depth": 50, "vector_depth": 50}
    print(
        f"\n2. quality: {len(questions)} questions over {len(documents)} documents "
        f"({sum(len(p) for _, p, _ in documents)} pages), searched over all of them"
    )
    for variant in variants:
        print(
            f"   {variant.label}: {variant.passages} passages embedded in {variant.embed_s:.0f} s"
        )
    print(
        f"   {main.label}{' ' * (30 - len(main.label))}   hit@1  hit@5  MRR@10   (odd | even questions: MRR@10)"
    )

    def row(name: str, ranks_of) -> None:
        h1, h5, mrr = scores(ranks_of(None))
        halves = " | ".join(f"{scores(ranks_of(half))[2]:.3f}" for half in (0, 1))
        print(f"   {name:33} {h1:.2f}   {h5:.2f}   {mrr:.3f}    ({halves})")

    row(
        "baseline: $text over whole pages",
        lambda half: [r for i, r in enumerate(report["baseline"]) if half is None or i % 2 == half],
    )
    row(
        "keyword: $text over passages",
        lambda half: variant_ranks(main, questions, main.keyword, half),
    )
    row("vector: exact top-k", lambda half: variant_ranks(main, questions, main.vector, half))
    row(
        "keyword: BM25 over passages",
        lambda half: variant_ranks(main, questions, main.bm25, half),
    )
    row(
        f"hybrid, $text: RRF k={HYBRID_K}, kw x{KEYWORD_WEIGHT} top {KEYWORD_DEPTH}",
        lambda half: variant_ranks(main, questions, fused(main), half),
    )
    row(
        f"hybrid, BM25: RRF k={HYBRID_K}, kw x{KEYWORD_WEIGHT} top {KEYWORD_DEPTH}",
        lambda half: variant_ranks(main, questions, fused(main, main.bm25), half),
    )
    print(
        f"   tries (MRR@10; hybrid = vector top {VECTOR_DEPTH} + keyword top {KEYWORD_DEPTH} at x{KEYWORD_WEIGHT}, k={HYBRID_K};"
        " textbook RRF = k=60, equal weights, top 50 of each)"
    )
    for variant in variants:
        vector = scores(variant_ranks(variant, questions, variant.vector))[2]
        keyword = scores(variant_ranks(variant, questions, variant.keyword))[2]
        bm25 = scores(variant_ranks(variant, questions, variant.bm25))[2]
        mixed = scores(variant_ranks(variant, questions, fused(variant)))[2]
        mixed_bm25 = scores(variant_ranks(variant, questions, fused(variant, variant.bm25)))[2]
        book = scores(variant_ranks(variant, questions, fused(variant, **textbook)))[2]
        print(
            f"     {variant.label:28} vector {vector:.3f}  keyword $text {keyword:.3f} BM25 {bm25:.3f}"
            f"  hybrid $text {mixed:.3f} BM25 {mixed_bm25:.3f}  textbook RRF ($text) {book:.3f}"
        )
    for name, keyword in (("$text", main.keyword), ("BM25", main.bm25)):
        print(
            f"   fusion grid with {name} on {main.label} (MRR@10 for keyword weight "
            "1 / 0.5 / 0.3, all questions (odd | even))"
        )
        for k in (5, 10, 20, 60):
            for depth in (10, 20, 50):
                cells = []
                for w in (1.0, 0.5, 0.3):
                    lists = fused(main, keyword, k=k, keyword_weight=w, keyword_depth=depth)
                    cells.append(
                        f"{scores(variant_ranks(main, questions, lists))[2]:.3f} ("
                        + " | ".join(
                            f"{scores(variant_ranks(main, questions, lists, half))[2]:.3f}"
                            for half in (0, 1)
                        )
                        + ")"
                    )
                print(f"     k={k:<3} keyword top {depth:<3} " + "  ".join(cells))
    print(f"   BM25 parameters on {main.label} (keyword MRR@10, all (odd | even); hybrid MRR@10)")
    for k1 in (0.9, 1.2, 1.5, 2.0):
        for b in (0.4, 0.75, 1.0):
            lists = [bm25_ranking(main.postings, q["question"], 100, k1=k1, b=b) for q in questions]
            halves = " | ".join(
                f"{scores(variant_ranks(main, questions, lists, half))[2]:.3f}" for half in (0, 1)
            )
            mixed = scores(variant_ranks(main, questions, fused(main, lists)))[2]
            print(
                f"     k1={k1:<4} b={b:<5} keyword {scores(variant_ranks(main, questions, lists))[2]:.3f}"
                f" ({halves})  hybrid {mixed:.3f}"
            )
    memory = report["memory"]
    print(
        f"   embedding process: RSS {memory['VmRSS'] / 2**20:.0f} MB, peak {memory['VmHWM'] / 2**20:.0f} MB, "
        f"VSZ {memory['VmSize'] / 2**20:.0f} MB"
    )


# 3. A 300-page chapter.


def generated_pdf(path: Path, pages: int = 300, words_per_page: int = 330) -> None:
    import random

    import pymupdf

    vocabulary = (  # noqa: SIM905 (a sentence of words reads better than 53 quoted ones)
        "the harbour master keeps ledger vessel enters port during winter months noting cargo "
        "crew hour arrival tide moon current anchor pilot quay warehouse merchant grain timber "
        "salt wool ship captain sailor weather storm calm north south east west river estuary "
        "lighthouse keeper signal lamp night fog bell channel depth chart survey record year"
    ).split()
    rng = random.Random(3)
    with pymupdf.open() as doc:
        for number in range(pages):
            words, sentences = 0, []
            while words < words_per_page:
                length = rng.randint(8, 22)
                sentence = " ".join(rng.choice(vocabulary) for _ in range(length))
                sentences.append(sentence.capitalize() + ".")
                words += length
            page = doc.new_page()
            text = f"Section {number // 10 + 1}.{number % 10 + 1} Harbour records\n" + " ".join(
                sentences
            )
            page.insert_textbox(pymupdf.Rect(50, 50, 545, 800), text, fontsize=9)
        doc.save(path)


async def three_hundred_pages(spec, counter, threads: int, directory: Path) -> dict[str, float]:
    import pymupdf

    from service.retrieval.chunking import ChunkLimits, chunk_chapter, passage_text
    from service.retrieval.process import EmbeddingProcess

    path = directory / "300-pages.pdf"
    generated_pdf(path)
    async with EmbeddingProcess(spec, threads=threads) as process:
        start = time.perf_counter()
        with pymupdf.open(path) as doc:
            pages = [(index + 1, page.get_text()) for index, page in enumerate(doc)]
        extracted = time.perf_counter()
        limits = ChunkLimits(max_tokens=counter.budget("passage"))
        chunks = chunk_chapter(pages, counter.offsets, title="Harbour records", limits=limits)
        chunked = time.perf_counter()
        cpu = cpu_seconds([process.pid])
        await process.embed([passage_text(c, "Harbour records") for c in chunks], "passage")
        embedded = time.perf_counter()
        child_cpu = cpu_seconds([process.pid]) - cpu
        memory = process.memory()
    return {
        "pages": len(pages),
        "chunks": len(chunks),
        "extract_s": extracted - start,
        "chunk_s": chunked - extracted,
        "embed_s": embedded - chunked,
        "total_s": embedded - start,
        "embed_cpu_s": child_cpu,
        "rss_peak_mb": memory.get("VmHWM", 0) / 2**20,
    }


# 4. Exact top-k.


def top_k_latency() -> dict[int, float]:
    import numpy as np

    from service.retrieval.ranking import top_k

    rng = np.random.default_rng(1)
    out = {}
    for n in (10_000, 100_000):
        matrix = rng.standard_normal((n, 384), dtype=np.float32)
        matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
        queries = matrix[rng.integers(0, n, 30)]
        times = []
        for query in queries:
            start = time.perf_counter()
            top_k(matrix, query, 10)
            times.append(time.perf_counter() - start)
        out[n] = statistics.median(times) * 1000
    return out


async def run(args: argparse.Namespace) -> None:
    from devstack.embedded import free_port, remove_tree, start_mongod
    from service.retrieval.model import load_model_spec
    from service.retrieval.tokens import TokenCounter

    spec = load_model_spec(args.model_dir)
    counter = TokenCounter(spec)
    evaluation = json.loads(EVAL.read_text())
    print(
        f"model {spec.name}, {spec.dimensions}-d, window {spec.max_tokens}; threads {args.threads}"
    )
    documents = load_documents(evaluation) if {1, 2} & set(args.parts) else []

    if 1 in args.parts:
        texts = [p.text for p in chunk_documents(documents, counter, header=True)[:96]]
        figures = await throughput(spec, texts, args.threads)
        print(f"\n1. throughput, {len(texts)} passages, median of 5 alternating rounds")
        print(
            f"   in-process onnxruntime  {figures['local']:6.1f} passages/s  {figures['local_cpu']:.3f} CPU s/passage"
        )
        print(
            f"   EmbeddingProcess        {figures['process']:6.1f} passages/s  {figures['process_cpu']:.3f} CPU s/passage"
        )
        print(
            f"   ratio process/in-process {figures['process'] / figures['local']:.2f} (passages/s), "
            f"{figures['local_cpu'] / figures['process_cpu']:.2f} (CPU)"
        )

    if 2 in args.parts:
        variants = [Variant(int(v[:-1]), v.endswith("h")) for v in args.variants]
        directory = Path(tempfile.mkdtemp(prefix="bench-index-"))
        server = start_mongod(directory / "db", free_port(), replica_set=False)
        try:
            import pymongo

            with pymongo.MongoClient(server.url) as client:
                report = await quality(
                    spec, counter, evaluation, documents, args.threads, client.bench_index, variants
                )
        finally:
            server.stop()
            remove_tree(directory)
        print_quality(evaluation, documents, report, variants)

    if 3 in args.parts:
        directory = Path(tempfile.mkdtemp(prefix="bench-index-"))
        try:
            figures = await three_hundred_pages(spec, counter, args.threads, directory)
        finally:
            shutil.rmtree(directory)
        print(f"\n3. a generated {figures['pages']}-page text PDF -> {figures['chunks']} passages")
        print(
            f"   extract {figures['extract_s']:.1f} s, chunk {figures['chunk_s']:.1f} s, embed {figures['embed_s']:.1f} s "
            f"(child CPU {figures['embed_cpu_s']:.0f} s): total {figures['total_s']:.0f} s; "
            f"embedding process peak RSS {figures['rss_peak_mb']:.0f} MB"
        )

    if 4 in args.parts:
        latency = top_k_latency()
        print("\n4. exact top-10 by inner product (numpy), median of 30 queries")
        for n, ms in latency.items():
            print(f"   {n:>7,} x 384 float32: {ms:.2f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2, help="onnxruntime intra-op threads")
    parser.add_argument("--model-dir", default=None, help="EMBEDDING_MODEL_DIR (default: MiniLM)")
    parser.add_argument("--parts", type=int, nargs="+", default=[1, 2, 3, 4], choices=[1, 2, 3, 4])
    parser.add_argument(
        "--variants",
        nargs="+",
        default=["160h", "160c", "210h"],
        help="passages for part 2: <target tokens>h (with header) or c (content only); the first is the main table's",
    )
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
