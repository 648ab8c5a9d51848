"""OpenAPI descriptions of error responses: one helper, and the set every job endpoint shares."""

from __future__ import annotations

from typing import Any

from litestar.openapi import ResponseSpec

from service.schemas import ErrorOut


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
