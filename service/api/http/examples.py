"""Examples in the OpenAPI document: one for each body a client sends or reads most (a job, a
chapter, a page, a page's words, a chunk, a search), and the event stream's events.

Each example is decoded into its own schema by ``tests/service/test_openapi_docs.py``, so an
example that drifts from its shape fails a test rather than misleading a reader of /schema.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from litestar.openapi.spec.base import BaseSchemaObject

from service.api.http.sse import KEEPALIVE, RETRY, sse, with_id
from service.api.schemas.chapters import (
    ChapterOut,
    ChapterPageOut,
    PageListOut,
    PageOut,
    PageWordsOut,
)
from service.api.schemas.chunks import ChunkEnvelope, ChunkListEnvelope
from service.api.schemas.events import PageEventOut
from service.api.schemas.jobs import CreateJobIn, JobListOut, JobPagesOut, JobStatusOut
from service.api.schemas.search import SearchIn, SearchOut
from service.domain.event_ids import Seen

API = "https://api.example.com"
JOB_ID = "42394a67-1d5e-4c8f-9a2b-3c4d5e6f7a8b"
CHAPTER_ID = "527a857d-0b1c-4d2e-8f3a-4b5c6d7e8f90"
FILE_ID = "5f48a972-6b7c-4d8e-9f0a-1b2c3d4e5f60"
CHUNK_ID = "9c0e3b1a-2c3d-4e5f-8a9b-0c1d2e3f4a5b"
SIGNED = "?expires=1796693400&sig=mYIzUKGJrvuQe2g1ffzdA7BKMOibVr8vt-dFPRWWEnQ"


def _image(kind: str, number: int) -> str:
    return f"{API}/api/v1/page-images/chapters/{CHAPTER_ID}/{kind}-{number}.webp{SIGNED}"


JOB = {
    "job_id": JOB_ID,
    "user_id": "alice",
    "book_id": "book_1",
    "filename": "the-sea.pdf",
    "status": "completed",
    "progress": 100,
    "message": "Chapter created successfully with 3 pages",
    "result": {"chapter_id": CHAPTER_ID, "total_pages": 3},
    "created_at": "2026-12-07T21:48:13.917Z",
    "updated_at": "2026-12-07T21:48:15.102Z",
    "completed_at": "2026-12-07T21:48:15.102Z",
}
PAGE_ENTRY = {
    "page_number": 1,
    "background_url": _image("page", 1),
    "thumbnail_url": _image("thumb", 1),
    "width": 1240,
    "height": 1755,
    "has_text": True,
    "elements": [],
    "text_source": "pdf",
    "ocr_confidence": None,
}
CHAPTER = {
    "chapter_id": CHAPTER_ID,
    "book_id": "book_1",
    "job_id": JOB_ID,
    "title": "The Sea",
    "slug": "the-sea",
    "order_index": None,
    "parent_id": None,
    "is_published": False,
    "is_preview_free": False,
    "content_mode": "pdf_pages",
    "total_pages": 3,
    "source_file_id": FILE_ID,
    "source_filename": "the-sea.pdf",
    "repaired": False,
    "created_at": "2026-12-07T21:48:15.100Z",
    "pages": [PAGE_ENTRY],
    "pdf_url": None,
    "outline": [
        {"level": 1, "title": "The Sea", "page": 1},
        {"level": 2, "title": "Morning", "page": 2},
    ],
    "search_status": "ready",
    "ocr_pages": 0,
    "pages_without_text": 0,
    "urls_expire_at": "2026-12-07T22:45:00.000Z",
}
PAGE = {
    "id": "0e4ad943-5f6a-4b7c-8d9e-0f1a2b3c4d5e",
    "chunk_index": 0,
    "page_number": 1,
    "content": "The Sea\n\nThe sea was calm that morning.\n",
    "background_url": _image("page", 1),
    "thumbnail_url": _image("thumb", 1),
    "width": 1240,
    "height": 1755,
    "has_text": True,
    "text_source": "pdf",
    "ocr_confidence": None,
}
WORDS = {
    "width": 1240,
    "height": 1755,
    "words": [
        [150, 143, 313, 188, "The", 0, 0],
        [330, 143, 392, 188, "Sea", 0, 0],
        [150, 230, 210, 262, "The", 1, 0],
        [222, 230, 282, 262, "sea", 1, 0],
    ],
    "links": [
        {"x0": 150, "y0": 600, "x1": 520, "y1": 640, "page": 3, "uri": None},
        {"x0": 150, "y0": 700, "x1": 610, "y1": 740, "page": None, "uri": "https://example.org/"},
    ],
}
CHUNK = {
    "id": CHUNK_ID,
    "job_id": JOB_ID,
    "chunk_index": 0,
    "content": "The Sea\n\nThe sea was calm that morning, and the boats stayed in.",
    "metadata": {"source_file": "the-sea.pdf", "page_number": 1, "total_pages": 3},
    "created_at": "2026-12-07T21:48:16.000Z",
    "updated_at": "2026-12-07T21:48:17.000Z",
}
SEARCH_RESULT = {
    "chunk_id": CHUNK_ID,
    "chapter_id": CHAPTER_ID,
    "book_id": "book_1",
    "job_id": JOB_ID,
    "chapter_title": "The Sea",
    "page_start": 1,
    "page_end": 2,
    "page_number": 1,
    "section": "Morning",
    "content": CHUNK["content"],
    "snippet": "The sea was calm that morning, and the boats stayed in.",
    "score": 0.032787,
    "thumbnail_url": _image("thumb", 1),
}

PAGE_EVENT = {
    **{name: value for name, value in PAGE_ENTRY.items() if name != "elements"},
    "total_pages": 3,
}

# Component schema name -> its example.
EXAMPLES: dict[str, dict[str, Any]] = {
    JobStatusOut.__name__: JOB,
    JobListOut.__name__: {"items": [JOB], "next_cursor": None},
    JobPagesOut.__name__: {
        "items": [PAGE_ENTRY],
        "rendered": 1,
        "total_pages": 3,
        "offset": 0,
        "limit": 20,
    },
    CreateJobIn.__name__: {"book_id": "book_1", "file_id": FILE_ID, "title": "The Sea"},
    ChapterOut.__name__: CHAPTER,
    ChapterPageOut.__name__: PAGE_ENTRY,
    PageOut.__name__: PAGE,
    PageListOut.__name__: {
        "items": [PAGE],
        "total": 3,
        "offset": 0,
        "limit": 20,
        "urls_expire_at": "2026-12-07T22:45:00.000Z",
    },
    PageWordsOut.__name__: WORDS,
    ChunkListEnvelope.__name__: {
        "success": True,
        "data": {
            "chunks": [CHUNK],
            "pagination": {
                "total": 3,
                "page": 1,
                "per_page": 1,
                "total_pages": 3,
                "has_next": True,
                "has_prev": False,
            },
        },
        "error": None,
    },
    ChunkEnvelope.__name__: {
        "success": True,
        "data": {
            **CHUNK,
            "chapter_id": CHAPTER_ID,
            "page_start": 1,
            "page_end": 2,
            "section": "Morning",
            "token_count": 17,
            "embedding": [0.0123, -0.0456, 0.0789],
            "embedding_model": "all-MiniLM-L6-v2-int8:284c2c7d3c91",
        },
        "error": None,
    },
    SearchIn.__name__: {"query": "what the sea was like that morning", "book_id": "book_1", "k": 5},
    SearchOut.__name__: {
        "results": [SEARCH_RESULT],
        "mode": "hybrid",
        "model": "all-MiniLM-L6-v2-int8:284c2c7d3c91",
    },
    PageEventOut.__name__: PAGE_EVENT,
}

# What each example is decoded into by the test that keeps them true.
EXAMPLE_TYPES: dict[str, type[Any]] = {
    cls.__name__: cls
    for cls in (
        JobStatusOut,
        JobListOut,
        JobPagesOut,
        CreateJobIn,
        ChapterOut,
        ChapterPageOut,
        PageOut,
        PageListOut,
        PageWordsOut,
        ChunkListEnvelope,
        ChunkEnvelope,
        SearchIn,
        SearchOut,
        PageEventOut,
    )
}

PROGRESS = {
    **{name: JOB[name] for name in ("job_id", "user_id", "book_id", "filename", "created_at")},
    "status": "processing",
    "progress": 43,
    "message": "Processed 1/3 pages...",
    "updated_at": "2026-12-07T21:48:14.420Z",
}


def _event_stream_example() -> str:
    """Written by the stream's own framing and ids (service/api/http/sse.py,
    service/domain/event_ids.py), so the example is its bytes."""

    def framed(event: str, payload: dict[str, Any], seen: Seen) -> bytes:
        return with_id(sse(event, json.dumps(payload, separators=(",", ":")).encode()), seen)

    seen = Seen(version=4)
    first = framed("progress", PROGRESS, seen)
    seen.add(int(str(PAGE_EVENT["page_number"])))
    page = framed("page", PAGE_EVENT, seen)
    seen.version = 7
    last = framed("progress", JOB, seen)
    return b"".join((RETRY, first, page, KEEPALIVE, last)).decode()


EVENT_STREAM_EXAMPLE = _event_stream_example()

EVENT_STREAM_DESCRIPTION = """A `text/event-stream` (server-sent events). Its events:

| event | `id:` | `data:` | when |
|---|---|---|---|
| `progress` | everything sent so far (below) | a `JobStatusOut`: exactly the poll's JSON | first (the job's current state), then on every change; writes that land within milliseconds may come as one |
| `page` | everything sent so far | a `PageEventOut`: one page stored, its image URLs and size as the chapter will list them | after the first `progress`, the pages stored so far, 100 at a time; then one per page as it is stored |
| `: keepalive` (a comment) | | | every `STREAM_HEARTBEAT_S` |

An event's `id:` names the job's version and the pages sent: `7` (version 7, no page), `7.12`
(and pages 1 to 12), `7.12+15+16` (and pages 15 and 16). The stream starts with `retry: 2000`
and ends after the terminal state (`completed`, `failed`, `cancelled`), always its last event.
Reconnect with `Last-Event-ID`: the state is sent again only when newer, only the pages the id
does not name, and a finished job whose end was seen answers 204. Connects per user are
rate-limited (429 with `Retry-After`)."""  # noqa: E501


@dataclass
class Verbatim(BaseSchemaObject):
    """An example rendered as written: Litestar drops every null from the document's dicts,
    and a null an endpoint really returns (``"uri": null``) belongs in its example."""

    value: dict[str, Any]

    def to_schema(self) -> dict[str, Any]:
        return self.value


def document_examples(document: Any) -> None:
    """Put the examples into ``document``'s component schemas (an OpenAPI object), and the event
    stream's events into its 200 response."""
    schemas = document.components.schemas
    for name, example in EXAMPLES.items():
        schema = schemas.get(name)
        if schema is None:
            raise LookupError(f"no schema {name} to give an example")
        if isinstance(schema, dict):
            schema["examples"] = [Verbatim(example)]
        else:
            schema.examples = [Verbatim(example)]
    events = document.paths["/api/v1/books/jobs/{job_id}/events"].get.responses["200"]
    events.description = EVENT_STREAM_DESCRIPTION
    content = events.content["text/event-stream"]
    content.schema.description = "Server-sent events, as described above"
    content.schema.examples = [EVENT_STREAM_EXAMPLE]
