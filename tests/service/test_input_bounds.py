"""No 500 from crafted input: cursors, offsets and limits are bounded and answer 400 in each
contract's error shape (issue 13, item 5), with property tests over any string."""

from __future__ import annotations

import base64
import contextlib
import uuid
from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.domain.cursor import MAX_MS, MIN_MS, Position, decode_cursor, encode_cursor
from service.domain.errors import InvalidParameter
from service.store.documents import BookChapter

PROPERTY = settings(
    max_examples=150,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
HUGE = "9223372036854775808"  # 2**63: one past MongoDB's int64

# Parameters are the same in every run (a test id is then stable, and parallel runs agree).
A_JOB_ID = "df9ec0be-9788-4a4d-ade0-bfa92372b946"


def b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


# --- The cursor, as a function ------------------------------------------------------------


@given(st.text(max_size=200))
@PROPERTY
def test_any_text_decodes_to_a_position_or_an_invalid_parameter(raw):
    outcome: Position | InvalidParameter
    try:
        outcome = decode_cursor(raw)
    except InvalidParameter as exc:
        outcome = exc

    if isinstance(outcome, InvalidParameter):
        assert outcome.status_code == 400
        assert outcome.details["field"] == "cursor"
    else:
        assert isinstance(outcome, Position)


@given(st.text(max_size=80))
@PROPERTY
def test_any_base64_of_text_decodes_or_is_invalid(text):
    with contextlib.suppress(InvalidParameter):
        decode_cursor(b64(text))


@given(
    st.integers(min_value=MIN_MS, max_value=MAX_MS),
    st.uuids().map(str),
)
@PROPERTY
def test_every_cursor_made_decodes_to_its_position(milliseconds, job_id):
    raw = b64(f"{milliseconds}|{job_id}")

    position = decode_cursor(raw)

    assert encode_cursor(position.created_at, position.job_id) == raw


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        (b64("1e25|x"), "no creation time"),
        (b64(f"{'9' * 15}|{A_JOB_ID}"), "creation time out of range"),
        (b64(f"{'9' * 25}|{A_JOB_ID}"), "no creation time"),
        (b64("1700000000000|not-a-uuid"), "no job id"),
        (b64(f"1700000000000|{A_JOB_ID.replace('-', '')}"), "no job id"),
        ("%%%", "not URL-safe base64"),
        ("A" * 129, "longer than 128 characters"),
    ],
)
def test_crafted_cursors_are_invalid_with_a_reason(raw, why):
    with pytest.raises(InvalidParameter) as refused:
        decode_cursor(raw)

    assert refused.value.detail == f"Invalid cursor: {why}; pass back a next_cursor"


def test_cursor_keeps_millisecond_precision():
    moment = datetime(2026, 2, 8, 0, 10, 28, 325000, tzinfo=UTC)
    job_id = str(uuid.uuid4())

    assert decode_cursor(encode_cursor(moment, job_id)) == Position(moment, job_id)


# --- Over HTTP ------------------------------------------------------------------------------


async def test_overflowing_cursor_is_400_naming_the_field(client, auth_headers):
    response = await client.get(
        "/api/v1/books/jobs", params={"cursor": b64("1e25|x")}, headers=auth_headers("alice")
    )

    assert response.status_code == 400
    assert response.json() == {
        "detail": "Invalid cursor: no creation time; pass back a next_cursor",
        "errors": [
            {
                "field": "cursor",
                "message": "Invalid cursor: no creation time; pass back a next_cursor",
            }
        ],
    }


@pytest.fixture
async def chapter(collections):
    doc = BookChapter(
        book_id="book_1",
        user_id="alice",
        job_id=str(uuid.uuid4()),
        title="T",
        total_pages=0,
        source_file_id="f",
        source_filename="f.pdf",
    )
    await collections.chapters.insert_one(doc.model_dump())
    return doc


@pytest.mark.parametrize("offset", [HUGE, "1000001", "-1", "1e400", "ten"])
async def test_chapter_pages_offset_out_of_bounds_is_400(client, auth_headers, chapter, offset):
    url = f"/api/v1/books/book_1/chapters/{chapter.chapter_id}/pages"

    response = await client.get(url, params={"offset": offset}, headers=auth_headers("alice"))

    assert response.status_code == 400
    body = response.json()
    assert body["errors"][0]["field"] == "offset"
    assert set(body) == {"detail", "errors"}


async def test_chunk_list_offset_out_of_bounds_is_400_in_the_envelope(
    client, auth_headers, job_factory
):
    job = await job_factory()

    response = await client.get(
        f"/api/v1/jobs/{job.job_id}/chunks", params={"offset": HUGE}, headers=auth_headers("alice")
    )

    assert response.status_code == 400
    body = response.json()
    assert body["success"] is False
    assert body["error"]["code"] == "VALIDATION_ERROR"
    assert body["error"]["details"] == {"field": "offset", "value": HUGE}


@pytest.mark.parametrize(
    ("path", "name"),
    [
        ("/api/v1/jobs", "offset"),
        ("/api/v1/jobs", "limit"),
        ("/api/v1/books/jobs", "limit"),
    ],
)
async def test_job_list_bounds_are_400(client, auth_headers, path, name):
    response = await client.get(path, params={name: HUGE}, headers=auth_headers("alice"))

    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == name


@given(raw=st.text(max_size=60))
@PROPERTY
async def test_any_cursor_string_over_http_is_200_or_400(client, auth_headers, raw):
    response = await client.get(
        "/api/v1/books/jobs", params={"cursor": raw}, headers=auth_headers("alice")
    )

    assert response.status_code in (200, 400), response.text


@given(
    raw=st.one_of(
        st.text(max_size=30),
        st.integers(min_value=-(2**70), max_value=2**70).map(str),
    )
)
@PROPERTY
async def test_any_offset_string_over_http_is_200_or_400(client, auth_headers, chapter, raw):
    url = f"/api/v1/books/book_1/chapters/{chapter.chapter_id}/pages"

    response = await client.get(url, params={"offset": raw}, headers=auth_headers("alice"))

    assert response.status_code in (200, 400), response.text
    if response.status_code == 200:  # msgspec reads "1e3" and " 7" as integers too
        assert 0 <= response.json()["offset"] <= 1_000_000
