"""Each seed document's example responses against ours, for a job in the same state.

The examples are read from the seed documents themselves (``docs/seeds/``, copied verbatim from
the specification set). Where we fed the example's own values in, the answer must equal the
example; elsewhere it must have the same field names, nesting and JSON types.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path

import pytest

from service.domain.job import JobStatus
from service.store.documents import JobResult
from tests.support.pdfs import text_pdf

SEEDS = Path(__file__).resolve().parents[2] / "docs" / "seeds"
# What our book-jobs JSON adds to seed 002's, documented in docs/api.md (a reader needs the
# job's book and file name on any browser): every field of the contract is still exact.
SEED_002_ADDITIONS = {"book_id", "filename", "chapter_deleted_at"}
JSON_BLOCK = re.compile(r"```json\n(.*?)```", re.DOTALL)


def examples(prefix: str) -> list:
    """The parseable JSON examples of seed document ``prefix`` (e.g. "000"), in order."""
    (path,) = SEEDS.glob(f"{prefix}_*.txt")
    found = []
    for block in JSON_BLOCK.findall(path.read_text(encoding="utf-8")):
        try:
            found.append(json.loads(block))
        except json.JSONDecodeError:
            continue  # an elided example ("...")
    return found


def json_type(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    return {str: "string", list: "array", dict: "object"}[type(value)]


def assert_same_shape(ours, example, path="$", *, extra=frozenset(), free=frozenset()):
    """Same keys (but ``extra`` ones we add), nesting and JSON types; ``free`` paths' object
    keys may differ (documented differences)."""
    assert json_type(ours) == json_type(example), (
        f"{path}: {json_type(ours)} vs {json_type(example)}"
    )
    if isinstance(example, dict):
        if path not in free:
            assert set(ours) - extra == set(example), (
                f"{path}: keys {sorted(ours)} vs {sorted(example)}"
            )
        for key in set(ours) & set(example):
            assert_same_shape(ours[key], example[key], f"{path}.{key}", extra=extra, free=free)
    elif isinstance(example, list) and example:
        assert ours, f"{path}: empty, where the example has items"
        for item in ours:
            assert_same_shape(item, example[0], f"{path}[]", extra=extra, free=free)


def parse(stamp: str | None) -> datetime | None:
    return None if stamp is None else datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def test_seed_documents_are_present_with_examples():
    # 000: one job (its list example is elided), 001: one status, 002: six job states and four
    # errors, 004: the list and two errors. Fewer means a seed changed or failed to parse.
    counts = {prefix: len(examples(prefix)) for prefix in ("000", "001", "002", "004")}
    assert counts == {"000": 1, "001": 1, "002": 10, "004": 3}


@pytest.mark.parametrize(
    "example",
    [e for e in examples("002") if "status" in e],
    ids=lambda e: f"{e['status']}-{e['progress']}",
)
async def test_seed_002_status_examples_are_answered_exactly(
    client, job_factory, auth_headers, example
):
    result = example.get("result")
    job = await job_factory(
        job_id=example["job_id"],
        user_id=example["user_id"],
        status=JobStatus(example["status"]),
        progress=example["progress"],
        message=example["message"],
        result=JobResult(**result) if result else None,
        error=example.get("error"),
        created_at=parse(example["created_at"]),
        updated_at=parse(example["updated_at"]),
        completed_at=parse(example.get("completed_at")),
        failed_at=parse(example.get("failed_at")),
    )

    response = await client.get(
        f"/api/v1/books/jobs/{example['job_id']}", headers=auth_headers(example["user_id"])
    )

    body = response.json()
    assert response.status_code == 200
    assert {key: value for key, value in body.items() if key not in SEED_002_ADDITIONS} == example
    assert body["book_id"] == job.book_id
    assert set(body) - set(example) == {"book_id"}  # no file name or deletion in the examples


async def test_seed_002_error_examples_are_answered_exactly(
    collections, client, job_factory, auth_headers
):
    not_found, denied, unauthenticated, failed = [e for e in examples("002") if "detail" in e]
    job_id = not_found["detail"].split()[1]
    url = f"/api/v1/books/jobs/{job_id}"
    missing = await client.get(url, headers=auth_headers("alice"))
    await job_factory(job_id=job_id, user_id="bob")
    forbidden = await client.get(url, headers=auth_headers("alice"))
    anonymous = await client.get(url)
    broken = await job_factory(user_id="alice")
    await collections.jobs.update_one({"job_id": broken.job_id}, {"$set": {"status": "exploded"}})

    crashed = await client.get(f"/api/v1/books/jobs/{broken.job_id}", headers=auth_headers("alice"))

    assert (missing.status_code, missing.json()) == (404, not_found)
    assert (forbidden.status_code, forbidden.json()) == (403, denied)
    assert (anonymous.status_code, anonymous.json()) == (401, unauthenticated)
    assert crashed.status_code == 500
    prefix = failed["detail"].removesuffix("<error message>")
    assert crashed.json()["detail"].startswith(prefix)
    assert crashed.json()["detail"] == (
        f"{prefix}internal error (request id {crashed.headers['x-request-id']})"
    )


async def test_seed_000_job_detail_has_the_examples_shape(client, auth_headers, submit, run_worker):
    (example,) = [e for e in examples("000") if "stages" in e]
    job = await submit(text_pdf(2))
    await run_worker()  # completed, as in the example

    response = await client.get(f"/api/v1/jobs/{job['job_id']}", headers=auth_headers("alice"))

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == example["status"]
    assert_same_shape(body, example, extra={"title", "repaired"})
    assert body["title"] is None  # created through seed 002, which has no title


async def test_seed_001_status_has_the_examples_shape(client, job_factory, auth_headers):
    (example,) = examples("001")
    job = await job_factory(
        status=JobStatus.processing, progress=40, started_at=parse(example["started_at"])
    )

    response = await client.get(
        f"/api/v1/ingestion/job/{job.job_id}", headers=auth_headers("alice")
    )

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == example["status"] == "running"
    # progress counts pages and chunks here, papers and PDFs there; stats is free-form in the
    # seed (an empty object) and holds attempts and stage timings here (docs/api.md: where we differ).
    assert_same_shape(body, example, extra={"repaired"}, free={"$.progress", "$.stats"})
    assert all(json_type(value) == "number" for value in body["stats"].values())
    assert set(body["progress"]) == {"pages_total", "pages_processed", "chunks_created", "errors"}
    assert json_type(body["progress"]["errors"]) == json_type(example["progress"]["errors"])


async def test_seed_003_job_router_answers_its_status_codes(client, auth_headers, upload):
    title = "Chuck Norris Job: Triple Roundhouse Compliance Report"  # the seed's JobCreate title
    file_id = (await upload(text_pdf(1))).json()["file_id"]
    body = {"title": title, "payload": {"book_id": "book_1", "file_id": file_id}}

    created = await client.post("/api/v1/jobs", json=body, headers=auth_headers("alice"))
    listed = await client.get("/api/v1/jobs", headers=auth_headers("alice"))
    deleted = await client.delete(
        f"/api/v1/jobs/{created.json()['id']}", headers=auth_headers("alice")
    )

    assert created.status_code == 201
    assert created.json()["title"] == title
    assert listed.status_code == 200
    assert [job["id"] for job in listed.json()] == [created.json()["id"]]
    assert deleted.status_code == 204


async def test_seed_004_list_has_the_examples_shape(
    client, auth_headers, submit, run_worker, index_chapters
):
    example = next(e for e in examples("004") if e["success"])
    job = await submit(text_pdf(2))
    await run_worker()
    await index_chapters()

    response = await client.get(
        f"/api/v1/jobs/{job['job_id']}/chunks", headers=auth_headers("alice")
    )

    assert response.status_code == 200
    assert_same_shape(response.json(), example)


async def test_seed_004_error_examples_are_answered_exactly(client, auth_headers):
    invalid, not_found = [e for e in examples("004") if not e["success"]]
    job_id = "9a326614-478f-4332-b65d-8824709cfa1e"
    not_found["error"]["message"] = not_found["error"]["message"].format(job_id=job_id)

    bad = await client.get("/api/v1/jobs/invalid-uuid/chunks", headers=auth_headers("alice"))
    missing = await client.get(f"/api/v1/jobs/{job_id}/chunks", headers=auth_headers("alice"))

    assert (bad.status_code, bad.json()) == (400, invalid)
    assert (missing.status_code, missing.json()) == (404, not_found)
