"""OpenAPI descriptions of the error responses every job endpoint shares."""

from __future__ import annotations

from litestar.openapi import ResponseSpec

from service.schemas import ErrorOut

ERROR_RESPONSES = {
    401: ResponseSpec(ErrorOut, description="Missing, invalid or expired Firebase ID token"),
    403: ResponseSpec(ErrorOut, description="The job belongs to another user"),
    404: ResponseSpec(ErrorOut, description="No such job"),
    500: ResponseSpec(ErrorOut, description="Unexpected failure; carries a request id"),
    503: ResponseSpec(ErrorOut, description="MongoDB unreachable; retry after Retry-After"),
}
