"""A worker's indexer: one chapter at a time, turned into retrieval chunks with vectors.

It runs as a task of its own in every worker, like the sweeper: never in a job slot, so a
chapter waiting to be indexed never keeps a PDF from being rendered, and its embedding process
runs at a lower CPU priority than the render processes. A chapter is ready to read when its job
completes; its index follows:

1. claim: the longest-waiting pending chapter of any worker's, under a new lease (its
   ``search`` state, ``service/domain/indexing.py``); the job's ``index_vectors`` stage starts;
2. chunk: its pages' text, with the PDF's outline for sections, into token-aware passages
   (``service/retrieval/chunking.py``), written at once with their term vectors for keyword
   search (``service/retrieval/terms.py``) and without vectors (so the chunk listing shows
   them), replacing any earlier ones;
3. embed: passages in batches through the worker's embedding process (``service/retrieval/
   process.py``), each batch's vectors written and its progress recorded (the lease's heartbeat,
   and the stage's percent);
4. ready: the chapter is searchable, its vectors of this model.

Its writes wait out a MongoDB outage (``worker/run/patience.py``) with the lease kept, as a
job's do: a restart of mongod costs the chapter a pause, not a second run. A worker that stops
hands its chapter back; one that dies leaves it to the sweeper, which hands it back once its
heartbeat is older than ``STALE_AFTER_S``. A chapter that cannot be indexed
(the model refuses it, or it keeps crashing the embedding process) is marked failed with why.
It is woken when its own worker creates a chapter, and otherwise looks every
``INDEX_POLL_INTERVAL_S``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import bson

from service.backoff import Backoff, pause
from service.domain import indexing, lifecycle
from service.domain.errors import (
    EmbeddingError,
    EmbeddingUnavailable,
    LeaseLost,
    StorageQuotaExceeded,
)
from service.domain.job import new_id, utcnow
from service.domain.page_keys import passages_key
from service.domain.stages import StageStatus
from service.retrieval.chunker import chunk_in_child
from service.retrieval.chunking import Chunk, ChunkLimits, passage_text
from service.retrieval.model import ModelSpec
from service.retrieval.process import EmbeddingProcess
from service.retrieval.ranking import vector_to_bson
from service.retrieval.terms import ANALYZER
from service.retrieval.tokens import TokenCounter
from service.settings import Settings
from service.store.database import Store
from service.store.failure import is_transient
from service.store.usage import Holding
from worker import metrics
from worker.run.heartbeat import keep_alive
from worker.run.patience import Patience

log = logging.getLogger("worker.indexing")

Doc = dict[str, Any]
T = TypeVar("T")

# Passages embedded, then written, at a time: one progress write (and heartbeat) per batch, and
# a batch is a few seconds of one thread (MiniLM: about 10 passages a CPU-second).
BATCH = 32
# Claims per chapter before it is marked failed (its indexing keeps dying).
MAX_ATTEMPTS = 3
# The lowest CPU priority a worker's embedding process takes (nice 10 below the worker's).
EMBEDDING_NICE = 10
CHAPTER_FIELDS = {
    "_id": 0,
    "chapter_id": 1,
    "job_id": 1,
    "book_id": 1,
    "user_id": 1,
    "title": 1,
    "outline": 1,
    "total_pages": 1,
    "source_filename": 1,
    "search": 1,
}
RETRY = Backoff(first_s=0.5, max_s=10.0)


class Indexer:
    """The indexing loop of one worker; ``wake()`` when a chapter was created."""

    def __init__(
        self, store: Store, settings: Settings, spec: ModelSpec, embeddings: EmbeddingProcess
    ) -> None:
        self._store = store
        self._settings = settings
        self._spec = spec
        self._counter = TokenCounter(spec)
        self._embeddings = embeddings
        self._wake = asyncio.Event()
        # Waits out MongoDB outages for the run's writes and reads (none gives up: the lease
        # cannot be taken while nobody reaches MongoDB, and the heartbeat resumes with it).
        self._patience = Patience()
        self.indexed = 0  # chapters this indexer made ready (for tests and logs)

    def wake(self) -> None:
        """Look for chapters now (one was just created)."""
        self._wake.set()

    async def run(self) -> None:
        """Index chapters until cancelled; waits out MongoDB outages."""
        delays = RETRY.delays()
        while True:
            try:
                claimed = await self.index_next()
            except Exception as exc:
                if not is_transient(exc):
                    log.exception("indexing failed unexpectedly; going on")
                else:
                    log.warning("indexing waits: %s", type(exc).__name__)
                await pause(next(delays))
                continue
            delays = RETRY.delays()
            if not claimed:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self._settings.index_poll_interval_s)

    async def index_next(self) -> bool:
        """Claim and index one pending chapter; False when none is waiting."""
        write = indexing.claim(utcnow())
        chapter = await self._store.chapters.apply_index(write, CHAPTER_FIELDS)
        if chapter is None:
            return False
        lease_id = str(write.lease_id)
        chapter_id = chapter["chapter_id"]
        if int((chapter.get("search") or {}).get("attempts", 1)) > MAX_ATTEMPTS:
            await self._fail(chapter, lease_id, "indexing kept failing; re-index to try again")
            return True
        try:
            await self._index(chapter, lease_id)
        except LeaseLost:
            log.info("chapter %s: indexing stopped: its lease is gone", chapter_id)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                await asyncio.shield(self._release(chapter, lease_id))
            raise
        except StorageQuotaExceeded as exc:
            # Its pages stay readable; a re-index once the owner has made room tries again.
            await self._fail(chapter, lease_id, f"its search passages were not stored: {exc}")
        except EmbeddingUnavailable as exc:
            if exc.permanent:
                await self._fail(chapter, lease_id, f"the embedding model cannot run: {exc}")
            else:
                await self._release(chapter, lease_id)
                raise
        except EmbeddingError as exc:
            # Crashed or timed out on this chapter: tried again, up to MAX_ATTEMPTS claims.
            log.warning("chapter %s: embedding failed (%s); handed back", chapter_id, exc)
            await self._release(chapter, lease_id)
        except Exception:
            await self._release(chapter, lease_id)
            raise
        return True

    async def _index(self, chapter: Doc, lease_id: str) -> None:
        """Index the chapter, beating its lease's heartbeat on a timer all the while."""
        chapter_id = chapter["chapter_id"]

        async def beat() -> None:
            write = indexing.heartbeat(chapter_id, lease_id, utcnow())
            if await self._store.chapters.apply_index(write) is None:
                raise LeaseLost(chapter_id)

        settings = self._settings
        heart = asyncio.create_task(
            keep_alive(
                beat, f"chapter {chapter_id}", settings.heartbeat_interval_s, settings.stale_after_s
            )
        )
        try:
            await self._index_chapter(chapter, lease_id)
        finally:
            heart.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heart

    async def _index_chapter(self, chapter: Doc, lease_id: str) -> None:
        chapter_id, job_id = chapter["chapter_id"], chapter["job_id"]
        await self._stage(job_id, StageStatus.processing, 0)
        pages = await self._wait(lambda: self._store.chapters.page_texts(job_id), "read pages")
        outline = [tuple(entry) for entry in chapter.get("outline") or []]
        title = chapter.get("title")
        limits = ChunkLimits(max_tokens=self._counter.budget("passage"))
        chunked = await chunk_in_child(
            self._spec, pages, outline=outline, title=title, limits=limits
        )
        chunks = chunked.chunks
        docs = [
            self._chunk_doc(chapter, chunk, terms)
            for chunk, terms in zip(chunks, chunked.terms, strict=True)
        ]
        # Counted against the owner's quota before they are written, all of them as one holding
        # (a re-index replaces it); given back with the chapter.
        held = Holding(
            passages_key(chapter_id), passages_bytes(docs, self._spec.dimensions), "passages"
        )
        await self._wait(
            lambda: self._store.usage.take(
                chapter["user_id"], [held], self._settings.storage_quota_bytes,
                "this chapter's search index",
            ),
            "hold the passages",
        )  # fmt: skip
        await self._wait(lambda: self._store.chunks.replace(chapter_id, docs), "store passages")
        await self._progress(chapter_id, lease_id, len(docs), 0)
        embedded = 0
        for start in range(0, len(docs), BATCH):
            batch_docs, batch_chunks = docs[start : start + BATCH], chunks[start : start + BATCH]
            texts = [passage_text(chunk, title) for chunk in batch_chunks]
            vectors = await self._embeddings.embed(texts, "passage")
            stored = [
                (doc["_id"], vector_to_bson(vector))
                for doc, vector in zip(batch_docs, vectors, strict=True)
            ]
            await self._wait(
                functools.partial(self._store.chunks.set_embeddings, stored, self._spec.name),
                "store vectors",
            )
            batch = batch_docs
            embedded += len(batch)
            metrics.CHUNKS_INDEXED.inc(len(batch))
            await self._progress(chapter_id, lease_id, len(docs), embedded)
            await self._stage(job_id, StageStatus.processing, 100 * embedded // max(len(docs), 1))
        done = indexing.ready(
            chapter_id, lease_id, self._spec.name, len(docs), utcnow(), terms=ANALYZER
        )
        if await self._wait(lambda: self._store.chapters.apply_index(done), "mark ready") is None:
            raise LeaseLost(chapter_id)
        await self._stage(job_id, StageStatus.completed, 100)
        self.indexed += 1
        log.info("chapter %s: indexed, %d chunks", chapter_id, len(docs))

    def _chunk_doc(self, chapter: Doc, chunk: Chunk, terms: bytes) -> Doc:
        now = utcnow()
        return {
            "_id": new_id(),
            "job_id": chapter["job_id"],
            "chapter_id": chapter["chapter_id"],
            "book_id": chapter["book_id"],
            "user_id": chapter["user_id"],
            "chunk_index": chunk.chunk_index,
            "content": chunk.content,
            "metadata": {
                "source_file": chapter.get("source_filename") or "document.pdf",
                "page_number": chunk.page_start,
                "total_pages": chapter.get("total_pages") or 0,
            },
            "page_start": chunk.page_start,
            "page_end": chunk.page_end,
            "section": chunk.section,
            "token_count": chunk.token_count,
            "terms": terms,
            "created_at": now,
            "updated_at": now,
        }

    async def _progress(self, chapter_id: str, lease_id: str, chunks: int, embedded: int) -> None:
        write = indexing.progress(chapter_id, lease_id, chunks, embedded, utcnow())
        if await self._wait(lambda: self._store.chapters.apply_index(write), "record") is None:
            raise LeaseLost(chapter_id)

    async def _stage(self, job_id: str, status: StageStatus, percent: int) -> None:
        """The job's ``index_vectors`` stage (the job-detail view); a job deleted since is fine."""
        write = lifecycle.indexed(job_id, status, percent, utcnow())
        await self._wait(lambda: self._store.jobs.apply(write), "record the stage")

    async def _wait(self, operation: Callable[[], Awaitable[T]], what: str) -> T:
        return await self._patience.call(operation, what)

    async def _release(self, chapter: Doc, lease_id: str) -> None:
        await self._store.chapters.apply_index(indexing.release(chapter["chapter_id"], lease_id))

    async def _fail(self, chapter: Doc, lease_id: str, reason: str) -> None:
        log.error("chapter %s: not indexed: %s", chapter["chapter_id"], reason)
        write = indexing.fail(chapter["chapter_id"], lease_id, reason, utcnow())
        await self._store.chapters.apply_index(write)
        with contextlib.suppress(Exception):
            await self._stage(chapter["job_id"], StageStatus.failed, 0)


def passages_bytes(docs: list[Doc], dimensions: int) -> int:
    """What ``docs`` take in ``document_chunks`` once embedded: each one's BSON, and its vector
    (float32, BSON binary with its subtype and dtype bytes) with the fields that name it."""
    embedded = 4 * dimensions + len("embedding") + len("embedding_model") + 80
    return sum(len(bson.encode(doc)) + embedded for doc in docs)


def embedding_process(settings: Settings, spec: ModelSpec) -> EmbeddingProcess:
    """The worker's embedding process (started by its first batch), below the worker's priority."""
    return EmbeddingProcess(
        spec,
        threads=settings.embedding_threads,
        memory_limit_bytes=settings.embedding_memory_limit_mb * 1024 * 1024,
        nice=EMBEDDING_NICE,
    )
