"""The book-jobs list cursor: an opaque position in a user's jobs, newest first.

A cursor is the URL-safe base64 (unpadded) of ``<created_at in ms>|<job_id>``. Decoding accepts
exactly what encoding makes, with bounds: anything else, whatever its bytes, is an
``InvalidParameter`` (400), never an exception of another kind. (A cursor of a 25-digit
millisecond count used to reach ``datetime.fromtimestamp`` and fail with an OverflowError: a 500.)
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from uuid import UUID

from service.domain.errors import InvalidParameter

# Long enough for any cursor we make (13 digits, a bar, a 36-character UUID, in base64: 68).
MAX_CURSOR_CHARS = 128
# 0001-01-01 .. 9999-12-31 in milliseconds from the epoch: what a datetime can hold.
MIN_MS = -62_135_596_800_000
MAX_MS = 253_402_300_799_999
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = re.compile(r"-?[0-9]{1,15}")
_BASE64URL = re.compile(r"[A-Za-z0-9_-]*")


@dataclass(frozen=True, slots=True)
class Position:
    """Where a page of the list ends: the last job's creation time and id."""

    created_at: datetime
    job_id: str


def encode_cursor(created_at: datetime, job_id: str) -> str:
    """The cursor that continues after this job."""
    if created_at.tzinfo is None:
        created_at = created_at.replace(tzinfo=UTC)
    # Integer arithmetic: timestamp() * 1000 is a float and loses a millisecond now and then,
    # and a cursor a millisecond early repeats a job or skips one.
    created_ms = (created_at - _EPOCH) // timedelta(milliseconds=1)
    raw = f"{created_ms}|{job_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _invalid(cursor: str, why: str) -> InvalidParameter:
    return InvalidParameter("cursor", cursor, f"Invalid cursor: {why}; pass back a next_cursor")


def decode_cursor(cursor: str) -> Position:
    """The position ``cursor`` names; ``InvalidParameter`` (400) for anything we did not make."""
    if len(cursor) > MAX_CURSOR_CHARS:
        raise _invalid(cursor, f"longer than {MAX_CURSOR_CHARS} characters")
    if not _BASE64URL.fullmatch(cursor) or len(cursor) % 4 == 1:
        raise _invalid(cursor, "not URL-safe base64")
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError):
        raise _invalid(cursor, "not URL-safe base64 of text") from None
    created_ms, bar, job_id = text.partition("|")
    if not bar or not _MS.fullmatch(created_ms):
        raise _invalid(cursor, "no creation time")
    milliseconds = int(created_ms)
    if not MIN_MS <= milliseconds <= MAX_MS:
        raise _invalid(cursor, "creation time out of range")
    try:
        canonical = str(UUID(job_id))
    except ValueError:
        raise _invalid(cursor, "no job id") from None
    if canonical != job_id:
        raise _invalid(cursor, "no job id")
    return Position(_EPOCH + timedelta(milliseconds=milliseconds), canonical)
