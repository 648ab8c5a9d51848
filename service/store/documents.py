"""The documents the service stores, and every collection's indexes.

``pdf_chapter_jobs`` holds one document per job. Every public contract (the five specification
documents in ``docs/seeds/``) is a representation of it (``service/api/schemas/``). Its state is
written only by ``service/store/jobs.py``, as guarded atomic partial updates built by
``service/domain/lifecycle.py``. ``JobDoc`` types the raw documents the store reads.

The models are plain pydantic: they give a new document its defaults and its shape (a job,
a chapter, a page), nothing more. Reads and writes go through the collections of
``service/store/collections.py`` with explicit projections and guarded updates; an ODM
(Beanie, formerly) added a process-wide binding of classes to one database and a server round
trip at start-up, and offered ``save()``, which would replace a whole job and race the worker.

``INDEXES`` declares every collection's indexes by name; ``python -m indexes sync`` applies them
(``indexes/spec.py`` adds the settings-driven TTL).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, NotRequired, TypedDict

import pymongo
from pydantic import BaseModel, ConfigDict, Field
from pymongo import IndexModel

from service.domain.chapter import ContentMode
from service.domain.job import ENQUEUED_MESSAGE, JobStatus, new_id, utcnow
from service.domain.stages import initial_stages
from service.store.collections import (
    CHAPTERS,
    CHUNKS,
    JOBS,
    PAGE_IMAGES_BUCKET,
    PAGES,
    TOMBSTONES,
    UPLOADS_BUCKET,
    WORKERS,
)


class JobResult(BaseModel):
    """What a completed job made."""

    chapter_id: str
    total_pages: int = Field(ge=0)


class PageError(BaseModel):
    """A page the worker could not read, or that MuPDF warned about; recorded on the job, which
    goes on. ``warnings``: how many the page raised (``error`` shows the first)."""

    page_number: int
    error: str
    warnings: int = 0
    timestamp: datetime | None = None


class PdfChapterJob(BaseModel):
    """A request to turn one uploaded PDF into one book chapter."""

    job_id: str = Field(default_factory=new_id)
    user_id: str
    book_id: str
    file_id: str
    # The uploaded file's (cleaned) name when the job was made: every view names the job by it.
    filename: str | None = None
    # The chapter's title as asked (the job router's job title too); else the PDF's, else the
    # file name.
    title: str | None = None
    # How the chapter is made and where it sits in its book (the create request's options).
    content_mode: ContentMode = ContentMode.pdf_pages
    slug: str | None = None
    order_index: int | None = None
    parent_id: str | None = None
    is_published: bool = False
    is_preview_free: bool = False
    # MuPDF had to rebuild a damaged file to read it (set by the worker).
    repaired: bool = False

    status: JobStatus = JobStatus.pending
    progress: int = Field(default=0, ge=0, le=100)
    message: str = ENQUEUED_MESSAGE

    result: JobResult | None = None
    error: str | None = None
    # A stable machine-readable reason for a failure (PDF_ENCRYPTED, OUT_OF_MEMORY, ...).
    error_code: str | None = None
    # The first pages MuPDF could not read or warned about (at most MAX_LISTED_PAGE_ERRORS,
    # service/domain/lifecycle.py); the job goes on. Every such page is in page_error_pages
    # (page numbers: at most MAX_PAGES of them), counted in page_errors_total.
    page_errors: list[PageError] = Field(default_factory=list)
    page_error_pages: list[int] = Field(default_factory=list)
    page_errors_total: int = 0
    # Per-stage status, percent and times, kept by the worker (service/domain/stages.py).
    stages: dict[str, Any] = Field(default_factory=initial_stages)
    pages_total: int | None = None
    pages_processed: int = 0
    # Pages whose text was read by OCR (scans), so far.
    pages_ocr: int = 0

    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    started_at: datetime | None = None
    completed_at: datetime | None = None
    failed_at: datetime | None = None
    cancelled_at: datetime | None = None
    # Its owner deleted the chapter it made (the job stays completed).
    chapter_deleted_at: datetime | None = None

    # Incremented by every write; the polling endpoint's ETag.
    version: int = 1
    # The run holding the job (opened by a claim; service/domain/lifecycle.py) and its liveness:
    # a stale heartbeat means the worker is gone.
    lease_id: str | None = None
    heartbeat_at: datetime | None = None
    # Fixed at the first claim, so every retry converges on the same chapter.
    chapter_id: str | None = None
    # When the queue was last told about this job (the sweeper rings again after a grace period).
    rung_at: datetime = Field(default_factory=utcnow)
    # How many times a worker has claimed the job.
    attempts: int = 0
    # The worker holding the lease ("host/slot", worker/identity.py), and how many runs of the
    # job were lost to a dead or stalled worker (JOB_MAX_ATTEMPTS bounds them).
    worker_id: str | None = None
    lost_runs: int = 0
    # Ended without a chapter (failed, cancelled) and what it wrote is not all removed yet: its
    # run removes it when it stops, the sweeper when the run or the page store could not.
    discard_pending: bool = False
    # Set by POST with an Idempotency-Key header: the key and a digest of the request body.
    idempotency_key: str | None = None
    request_fingerprint: str | None = None


class StageDoc(TypedDict):
    status: str
    percent: int
    started_at: datetime | None
    finished_at: datetime | None


class PageErrorDoc(TypedDict):
    page_number: int
    error: str
    warnings: NotRequired[int]
    timestamp: NotRequired[datetime]


class ResultDoc(TypedDict):
    chapter_id: str
    total_pages: int


class JobDoc(TypedDict, total=False):
    """A ``pdf_chapter_jobs`` document as the store reads it (a projection may omit fields).

    The same fields as ``PdfChapterJob``; mypy checks the mappers' field names against it.
    """

    job_id: str
    user_id: str
    book_id: str
    file_id: str
    filename: str | None
    title: str | None
    content_mode: str
    slug: str | None
    order_index: int | None
    parent_id: str | None
    is_published: bool
    is_preview_free: bool
    repaired: bool
    status: str
    progress: int
    message: str
    result: ResultDoc | None
    error: str | None
    error_code: str | None
    page_errors: list[PageErrorDoc]
    page_error_pages: list[int]
    page_errors_total: int
    stages: dict[str, StageDoc]
    pages_total: int | None
    pages_processed: int
    pages_ocr: int
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    completed_at: datetime | None
    failed_at: datetime | None
    cancelled_at: datetime | None
    chapter_deleted_at: datetime | None
    version: int
    lease_id: str | None
    heartbeat_at: datetime | None
    chapter_id: str | None
    rung_at: datetime
    attempts: int
    worker_id: str | None
    lost_runs: int
    idempotency_key: str | None
    request_fingerprint: str | None


class BookChapter(BaseModel):
    """The chapter a completed job made: one per job. Its pages (text, words, image keys, sizes)
    are in ``chapter_pages``, its retrieval chunks in ``document_chunks``; image URLs are made
    when the chapter is read, never stored."""

    chapter_id: str = Field(default_factory=new_id)
    book_id: str
    user_id: str
    job_id: str
    title: str
    slug: str | None = None  # unique in the book; chapters made before slugs existed have none
    order_index: int | None = None
    parent_id: str | None = None
    is_published: bool = False
    is_preview_free: bool = False
    content_mode: ContentMode = ContentMode.pdf_pages
    total_pages: int
    source_file_id: str
    source_filename: str
    repaired: bool = False
    # Every page, in order, with its image keys and sizes (content mode pdf_pages).
    pages: list[ChapterPage] = Field(default_factory=list)
    # The PDF itself in the page store (content mode pdf_file).
    pdf_key: str | None = None
    created_at: datetime = Field(default_factory=utcnow)


class ImageRef(BaseModel):
    """A stored image of a page: its key in the page store and its size in pixels."""

    key: str
    width: int
    height: int


class ChapterPage(BaseModel):
    """One page as the chapter lists it (the original product's ``pages``; URLs made on read)."""

    page_number: int
    image: ImageRef | None = None
    thumbnail: ImageRef | None = None
    has_text: bool = True
    text_source: str = "pdf"
    ocr_confidence: float | None = None


class ChunkMetadata(BaseModel):
    """Where a chunk comes from, as the chunk-listing contract shows it."""

    source_file: str
    page_number: int  # the page the chunk starts on
    total_pages: int


class ChapterPageDoc(BaseModel):
    """One page of a chapter (``chapter_pages``): its text, where that text came from, its
    positioned words and, rendered, its image and thumbnail. Its public ``id`` (a UUID) is the
    MongoDB ``_id``. Written once the page's images are stored, so a page that exists can be
    shown."""

    model_config = ConfigDict(populate_by_name=True)

    id: str = Field(default_factory=new_id, alias="_id")
    job_id: str
    chapter_id: str
    user_id: str
    page_index: int  # 0-based
    content: str
    metadata: ChunkMetadata
    image: ImageRef | None = None
    thumbnail: ImageRef | None = None
    has_text: bool = True
    # pdf: the PDF's own text layer; ocr: read from the page image; none: no text found.
    text_source: str = "pdf"
    ocr_confidence: float | None = None  # mean word confidence (0-100) of an OCR page
    rotation: int = 0  # clockwise turn (0/90/180/270) the image needs to read upright
    # Every word boxed in the page image's pixels (service/domain/words.py), and the size of
    # the image those pixels belong to.
    words: bytes = b""
    words_width: int = 0
    words_height: int = 0
    # Every MuPDF warning raised while loading and rendering this page.
    warnings: list[str] = Field(default_factory=list)
    # Why MuPDF could not read the page, if it could not (the job lists it in page_errors too;
    # a resumed run that keeps this page records it again from here).
    error: str | None = None
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class DocumentChunk(BaseModel):
    """A retrieval chunk (``document_chunks``): a passage of a chapter of about the embedding
    model's window, and once indexed its vector. Its public ``id`` (a UUID) is the MongoDB
    ``_id``. ``metadata.page_number`` is the page it starts on (the chunk-listing contract's
    shape); ``page_start``/``page_end`` its span."""

    model_config = ConfigDict(populate_by_name=True)

    id: str = Field(default_factory=new_id, alias="_id")
    job_id: str
    chapter_id: str
    book_id: str
    user_id: str
    chunk_index: int
    content: str
    metadata: ChunkMetadata
    page_start: int
    page_end: int
    section: str | None = None
    token_count: int
    # A BSON binary vector (float32, subtype 9), and the model that made it; absent until the
    # chunk is embedded.
    embedding: bytes | None = None
    embedding_model: str | None = None
    # Its sparse term vector for keyword search (BM25): 5 bytes a distinct term, as
    # service/retrieval/terms.py writes it; absent on chunks indexed before term vectors were.
    terms: bytes | None = None
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


# --- Indexes, by collection (``python -m indexes sync`` applies them) ---------------------------

# The TTL index on created_at depends on JOB_TTL_DAYS and is added by indexes/spec.py.
JOB_INDEXES = [
    IndexModel([("job_id", pymongo.ASCENDING)], name="job_id_unique", unique=True),
    IndexModel(
        [("user_id", pymongo.ASCENDING), ("status", pymongo.ASCENDING)],
        name="user_id_status",
    ),
    IndexModel([("updated_at", pymongo.ASCENDING)], name="updated_at"),
    # The caller's jobs, newest first (GET /api/v1/books/jobs, cursor pagination).
    IndexModel(
        [
            ("user_id", pymongo.ASCENDING),
            ("created_at", pymongo.DESCENDING),
            ("job_id", pymongo.DESCENDING),
        ],
        name="user_id_created_at",
    ),
    # One uploaded file's jobs, newest first (/api/v1/jobs/document/{id}).
    IndexModel(
        [
            ("user_id", pymongo.ASCENDING),
            ("file_id", pymongo.ASCENDING),
            ("created_at", pymongo.DESCENDING),
        ],
        name="user_id_file_id_created_at",
    ),
    # The sweeper's scan of jobs whose output is still to be removed (a few at most).
    IndexModel(
        [("discard_pending", pymongo.ASCENDING), ("updated_at", pymongo.ASCENDING)],
        name="discard_pending_updated_at",
        partialFilterExpression={"discard_pending": True},
    ),
    # The sweeper's scan of pending and processing jobs.
    IndexModel(
        [("status", pymongo.ASCENDING), ("heartbeat_at", pymongo.ASCENDING)],
        name="status_heartbeat_at",
    ),
    IndexModel(
        [("user_id", pymongo.ASCENDING), ("idempotency_key", pymongo.ASCENDING)],
        name="user_id_idempotency_key_unique",
        unique=True,
        partialFilterExpression={"idempotency_key": {"$type": "string"}},
    ),
]

CHAPTER_INDEXES = [
    IndexModel([("chapter_id", pymongo.ASCENDING)], name="chapter_id_unique", unique=True),
    # One chapter per job, even when a retried job finishes twice.
    IndexModel([("job_id", pymongo.ASCENDING)], name="job_id_unique", unique=True),
    IndexModel(
        [("user_id", pymongo.ASCENDING), ("book_id", pymongo.ASCENDING)],
        name="user_id_book_id",
    ),
    # The indexers' scan for chapters to index, and the sweeper's for stale ones.
    IndexModel(
        [("search.status", pymongo.ASCENDING), ("search.requested_at", pymongo.ASCENDING)],
        name="search_status_requested_at",
    ),
    # A slug names one chapter of a book.
    IndexModel(
        [
            ("user_id", pymongo.ASCENDING),
            ("book_id", pymongo.ASCENDING),
            ("slug", pymongo.ASCENDING),
        ],
        name="user_id_book_id_slug_unique",
        unique=True,
        partialFilterExpression={"slug": {"$type": "string"}},
    ),
]

PAGE_INDEXES = [
    # A retried or resumed job upserts the same pages: never a duplicate.
    IndexModel(
        [("job_id", pymongo.ASCENDING), ("page_index", pymongo.ASCENDING)],
        name="job_id_page_index_unique",
        unique=True,
    ),
    IndexModel(
        [("chapter_id", pymongo.ASCENDING), ("page_index", pymongo.ASCENDING)],
        name="chapter_id_page_index",
    ),
]

CHUNK_INDEXES = [
    # The chunk-listing contract lists a job's chunks; a re-index replaces a chapter's whole.
    IndexModel(
        [("job_id", pymongo.ASCENDING), ("chunk_index", pymongo.ASCENDING)],
        name="job_id_chunk_index_unique",
        unique=True,
    ),
    IndexModel(
        [("chapter_id", pymongo.ASCENDING), ("chunk_index", pymongo.ASCENDING)],
        name="chapter_id_chunk_index",
    ),
    # Keyword search: every query names its user (the prefix), then the passage's words.
    # English stemming: the evaluation set is English (other languages still match word for
    # word). The section and the title in the index made keyword search worse on it
    # (bench/index.py), so they are not.
    IndexModel(
        [("user_id", pymongo.ASCENDING), ("content", pymongo.TEXT)],
        name="user_id_content_text",
        default_language="english",
        language_override="text_language",
    ),
]

# Records of workers (service/store/workers.py) and tombstones of deleted jobs
# (service/store/tombstones.py) go by themselves once expires_at has passed.
EXPIRES_AT_TTL = IndexModel(
    [("expires_at", pymongo.ASCENDING)], name="expires_at_ttl", expireAfterSeconds=0
)
TOMBSTONE_INDEXES = [
    EXPIRES_AT_TTL,
    # The sweeper's scan of tombstones still to sweep (a few at most).
    IndexModel(
        [("deleted_at", pymongo.ASCENDING)],
        name="deleted_at_unswept",
        partialFilterExpression={"swept": False},
    ),
]

# Per-user byte sums over GridFS files read these indexes alone (covered queries).
QUOTA_INDEX = IndexModel(
    [("metadata.user_id", pymongo.ASCENDING), ("length", pymongo.ASCENDING)],
    name="metadata_user_id_length",
)
# The indexes every GridFS reader relies on, with the driver's names. The unique (files_id, n)
# also stops a retried insert from duplicating a chunk. Our files are written chunk by chunk, not
# by the GridFS driver (which would create these itself), so they are ours to keep.
GRIDFS_CHUNKS_INDEX = IndexModel([("files_id", 1), ("n", 1)], unique=True, name="files_id_1_n_1")
GRIDFS_FILES_INDEX = IndexModel(
    [("filename", 1), ("uploadDate", 1)], name="filename_1_uploadDate_1"
)

INDEXES: dict[str, list[IndexModel]] = {
    JOBS: JOB_INDEXES,
    CHAPTERS: CHAPTER_INDEXES,
    PAGES: PAGE_INDEXES,
    CHUNKS: CHUNK_INDEXES,
    WORKERS: [EXPIRES_AT_TTL],
    TOMBSTONES: TOMBSTONE_INDEXES,
    f"{UPLOADS_BUCKET}.files": [QUOTA_INDEX, GRIDFS_FILES_INDEX],
    f"{UPLOADS_BUCKET}.chunks": [GRIDFS_CHUNKS_INDEX],
    # Not summed for quotas (service/store/usage.py holds what page images take); a large
    # object written as a revision is found by its file name (gridfs_store.put_file).
    f"{PAGE_IMAGES_BUCKET}.files": [GRIDFS_FILES_INDEX],
    f"{PAGE_IMAGES_BUCKET}.chunks": [GRIDFS_CHUNKS_INDEX],
}
