"""Schemathesis over the whole OpenAPI document, against the API served by granian.

Every operation gets generated requests (valid and invalid) with a valid token; no answer may be
a 5xx, and every answer must match the document: a documented status code, the documented
content type and the documented body schema. The second pass draws path ids from real jobs,
chunks, chapters and files of the token's user half of the time, so the 200 answers with real
data are checked too, not only the 404s random ids get.

The schema is built in-process at collection time (``create_app`` does no I/O); requests go to
the real server.
"""

from __future__ import annotations

import json
import uuid
from datetime import timedelta

import gridfs
import httpx
import pymongo
import pytest
import schemathesis
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from litestar.serialization import encode_json
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from devstack.token import emulator_token
from service.api.app import create_app
from service.domain.job import JobStatus, utcnow
from service.settings import Settings
from service.store.documents import (
    BookChapter,
    ChapterPageDoc,
    ChunkMetadata,
    DocumentChunk,
    JobResult,
    PageError,
    PdfChapterJob,
)
from service.store.files import BUCKET
from tests.conftest import PROJECT_ID
from tests.support.pdfs import text_pdf
from tests.support.server import granian_api

USER = "fuzzer"
# The seeded data's ids, fixed at collection time so that the schema's dictionaries name them.
IDS = {
    "job_id": [str(uuid.uuid4()) for _ in range(5)],
    "chunk_id": [str(uuid.uuid4()) for _ in range(2)],
    "chapter_id": [str(uuid.uuid4())],
    "book_id": ["book-1"],
    "document_id": [str(uuid.uuid4())],
}
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
EXAMPLES = hypothesis_settings(
    max_examples=25,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)

# Through JSON, as a client sees it (the in-memory document holds str subclasses).
DOCUMENT = json.loads(encode_json(create_app(Settings()).openapi_schema.to_schema()))
# Event streams stay open until their job finishes: tests/service/test_events.py reads them.
STREAMS = r"/events$"
SCHEMA = schemathesis.openapi.from_dict(DOCUMENT).exclude(path_regex=STREAMS)
SCHEMA_WITH_IDS = schemathesis.openapi.from_dict(
    DOCUMENT,
    config=schemathesis.Config.from_dict(
        {
            "dictionaries": {name: {"values": values} for name, values in IDS.items()},
            "parameters": {
                f"path.{name}": {"dictionary": name, "probability": 0.5} for name in IDS
            },
        }
    ),
).exclude(path_regex=STREAMS)


def _seed(db: pymongo.database.Database) -> None:
    """A file, jobs in every state, and the chapter and chunks of the completed one."""
    file_id = IDS["document_id"][0]
    gridfs.GridFSBucket(db, BUCKET).upload_from_stream_with_id(
        file_id,
        "seed.pdf",
        text_pdf(2),
        metadata={"user_id": USER, "content_type": "application/pdf", "created_at": utcnow()},
    )
    now = utcnow()
    job_ids = iter(IDS["job_id"])
    common = {"user_id": USER, "book_id": IDS["book_id"][0], "file_id": file_id}
    chapter_id = IDS["chapter_id"][0]
    jobs = [
        PdfChapterJob.model_construct(job_id=next(job_ids), title="Pending", **common),
        PdfChapterJob.model_construct(
            job_id=next(job_ids), status=JobStatus.processing, progress=45, started_at=now,
            pages_total=2, pages_processed=1,
            page_errors=[PageError(page_number=1, error="bad font", timestamp=now)], **common,
        ),
        PdfChapterJob.model_construct(
            job_id=next(job_ids), status=JobStatus.failed, progress=30, error="PDF is encrypted",
            error_code="PDF_ENCRYPTED", failed_at=now, **common,
        ),
        PdfChapterJob.model_construct(
            job_id=next(job_ids), status=JobStatus.cancelled, error_code="CANCELLED",
            cancelled_at=now, **common,
        ),
        PdfChapterJob.model_construct(
            job_id=next(job_ids), status=JobStatus.completed, progress=100,
            started_at=now - timedelta(seconds=3), completed_at=now,
            result=JobResult(chapter_id=chapter_id, total_pages=2), **common,
        ),
    ]  # fmt: skip
    done = jobs[-1]
    chapter = BookChapter.model_construct(
        chapter_id=chapter_id, book_id=IDS["book_id"][0], user_id=USER, job_id=done.job_id,
        title="Seed", total_pages=2, source_file_id=file_id, source_filename="seed.pdf",
    )  # fmt: skip
    metadata = [
        ChunkMetadata(source_file="seed.pdf", page_number=index + 1, total_pages=2)
        for index in range(2)
    ]
    pages = [
        ChapterPageDoc.model_construct(
            job_id=done.job_id, chapter_id=chapter_id, user_id=USER, page_index=index,
            content=f"page {index} " * 100, metadata=metadata[index],
        )
        for index in range(2)
    ]  # fmt: skip
    chunks = [
        DocumentChunk.model_construct(
            id=chunk_id, job_id=done.job_id, chapter_id=chapter_id, book_id=IDS["book_id"][0],
            user_id=USER, chunk_index=index, content=f"page {index} " * 100,
            metadata=metadata[index], page_start=index + 1, page_end=index + 1, token_count=200,
        )
        for index, chunk_id in enumerate(IDS["chunk_id"])
    ]  # fmt: skip
    db["pdf_chapter_jobs"].insert_many([job.model_dump(exclude={"id"}) for job in jobs])
    db["book_chapters"].insert_one(chapter.model_dump(exclude={"id"}))
    db["chapter_pages"].insert_many([page.model_dump(by_alias=True) for page in pages])
    db["document_chunks"].insert_many([chunk.model_dump(by_alias=True) for chunk in chunks])


@pytest.fixture(scope="module")
def served(settings, tmp_path_factory):
    """The API under granian over the seeded data; yields its URL and the user's headers."""
    with pymongo.MongoClient(settings.mongodb_url, tz_aware=True) as client:
        db = client[settings.mongodb_db]
        _seed(db)
        log = tmp_path_factory.mktemp("fuzz") / "api.log"
        try:
            with granian_api(settings, PROJECT_ID, log) as port:
                token = emulator_token(USER, PROJECT_ID)
                yield f"http://127.0.0.1:{port}", {"Authorization": f"Bearer {token}"}
        finally:
            for name in db.list_collection_names():
                db[name].delete_many({})


@SCHEMA.parametrize()
@EXAMPLES
def test_every_operation_answers_within_its_schema(case, served):
    base_url, headers = served
    case.call_and_validate(base_url=base_url, headers=headers, checks=CHECKS)


@SCHEMA_WITH_IDS.parametrize()
@EXAMPLES
def test_every_operation_on_real_data_answers_within_its_schema(case, served):
    base_url, headers = served
    case.call_and_validate(base_url=base_url, headers=headers, checks=CHECKS)


def test_the_served_document_lists_every_endpoint_with_response_schemas(served):
    base_url, _ = served

    document = httpx.get(f"{base_url}/schema/openapi.json").json()

    operations = {
        (method.upper(), path): operation
        for path, item in document["paths"].items()
        for method, operation in item.items()
    }
    assert set(operations) >= {
        ("GET", "/api/v1/books/jobs/{job_id}"),
        ("GET", "/api/v1/jobs"),
        ("POST", "/api/v1/jobs"),
        ("GET", "/api/v1/jobs/{job_id}"),
        ("DELETE", "/api/v1/jobs/{job_id}"),
        ("GET", "/api/v1/jobs/document/{document_id}"),
        ("GET", "/api/v1/jobs/{job_id}/chunks"),
        ("GET", "/api/v1/chunks/{chunk_id}"),
        ("GET", "/api/v1/ingestion/job/{job_id}"),
    }
    for key, operation in operations.items():
        assert (
            "200" in operation["responses"]
            or "201" in operation["responses"]
            or ("202" in operation["responses"] or "204" in operation["responses"])
        ), key
        for status, response in operation["responses"].items():
            if status not in ("204", "304"):
                assert "content" in response, f"{key} {status} has no schema"
    assert document == DOCUMENT
