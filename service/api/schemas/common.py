"""What every contract shares: timestamps, the error body, and the OpenAPI descriptions of error
responses (one helper, and the set every job endpoint shares)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

import msgspec
from litestar.openapi import ResponseSpec

Timestamp = Annotated[
    str,
    msgspec.Meta(
        extra_json_schema={"format": "date-time", "examples": ["2026-02-08T00:10:28.325Z"]}
    ),
]


def iso_z(moment: datetime) -> str:
    """ISO-8601 in UTC with milliseconds and ``Z``: ``2026-02-08T00:10:28.325Z``."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    elif moment.utcoffset():
        moment = moment.astimezone(UTC)
    # isoformat is C; formatting with strftime codes cost 5% of the polling endpoint's CPU.
    return moment.replace(tzinfo=None).isoformat(timespec="milliseconds") + "Z"


def iso_z_or_none(moment: datetime | None) -> str | None:
    return None if moment is None else iso_z(moment)


class FieldErrorOut(msgspec.Struct, kw_only=True):
    """One bad input: where (``payload.file_id``, ``limit``) and what is wrong with it."""

    field: str
    message: str


class ErrorOut(msgspec.Struct, kw_only=True, omit_defaults=True):
    """Every error this service answers with: ``{"detail": "..."}``, plus ``errors`` naming
    each bad field of a rejected request (400, 422)."""

    detail: str
    errors: list[FieldErrorOut] | None = None
    request_id: str | None = None  # on a 500: quote it to find the logged error


def error(description: str, model: Any = ErrorOut) -> ResponseSpec:
    """A documented error response (no generated example: random strings mislead readers)."""
    return ResponseSpec(model, generate_examples=False, description=description)


BAD_REQUEST = {400: error("Invalid path or query parameter; `errors` names each")}

ERROR_RESPONSES = {
    **BAD_REQUEST,
    401: error("Missing, invalid or expired Firebase ID token"),
    403: error("The job belongs to another user"),
    404: error("No such job"),
    500: error("Unexpected failure; carries a request id"),
    503: error("MongoDB unreachable; retry after Retry-After"),
}
# What any authenticated endpoint may answer, whatever it is about.
CALLER_ERRORS = {code: ERROR_RESPONSES[code] for code in (401, 500, 503)}
# Endpoints where another user's job is a 404, as if it did not exist: no 403.
OWNER_HIDDEN_ERRORS = {code: spec for code, spec in ERROR_RESPONSES.items() if code != 403}


class Printable:
    """A marker in ``Annotated[str, ..., PRINTABLE]``: the field is an identifier the client
    chooses, printable and usable as a URL path segment (``identifier_problem``)."""


PRINTABLE = Printable()
# An identifier the client chooses (``book_id``): printable, 1 to 128 characters, no "/".
PrintableId = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=128,
        description=(
            "1 to 128 printable characters (no control, line break or bidi character), "
            "no '/', not '.' or '..' (it is a URL path segment)"
        ),
    ),
    PRINTABLE,
]
