"""Errors the service shows to clients: each carries its HTTP status, a stable code and a public
message. Handlers and the store raise them; ``service/api/errors.py`` renders them.

    ServiceError                    (500) INTERNAL_ERROR: base
    ├── NotAuthenticated            (401) UNAUTHORIZED "Could not validate credentials"
    ├── AccessDenied                (403) FORBIDDEN "Access denied to this job"
    ├── Forbidden                   (403) FORBIDDEN: any other refusal (an unsigned image URL)
    ├── NotFound                    (404) NOT_FOUND: a file, chapter or chunk not the caller's
    │   └── JobNotFound             (404) JOB_NOT_FOUND "Job <job_id> not found"
    ├── BadRequest                  (400) BAD_REQUEST: a malformed request (an empty upload, ...)
    │   ├── InvalidParameter        (400) VALIDATION_ERROR: names the field and the value sent
    │   └── ClientDisconnected      (400) CLIENT_DISCONNECTED (service/api/body_stream.py)
    ├── UnsupportedMediaType        (415) UNSUPPORTED_MEDIA_TYPE: an upload that is not a PDF
    ├── PayloadTooLarge             (413) PAYLOAD_TOO_LARGE: over MAX_UPLOAD_MB / MAX_JSON_BODY_KB
    │   └── StorageQuotaExceeded    (413) STORAGE_QUOTA_EXCEEDED: past STORAGE_QUOTA_MB
    ├── RequestTimeout              (408) REQUEST_TIMEOUT: a body idle for UPLOAD_IDLE_TIMEOUT_S
    ├── Conflict                    (409) CONFLICT: a transition the job's state forbids
    ├── InvalidRequest              (422) VALIDATION_ERROR: a body that fails validation
    ├── RateLimited                 (429) RATE_LIMITED; Retry-After (service/api/rate_limit.py)
    ├── TooManyActiveJobs           (429) TOO_MANY_ACTIVE_JOBS: MAX_ACTIVE_JOBS_PER_USER
    ├── TooManyUploads              (429) TOO_MANY_UPLOADS; Retry-After (service/api/upload_slot.py)
    └── DependencyUnavailable       (503) SERVICE_UNAVAILABLE: MongoDB or Redis down; Retry-After

Messages are safe to show: they never carry an internal message or a stack trace.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class ServiceError(Exception):
    """A failure with a status code, a stable code and a message that is safe to show a client."""

    status_code: int = 500
    code: str = "INTERNAL_ERROR"
    detail: str = "Internal server error"

    def __init__(
        self,
        detail: str | None = None,
        *,
        headers: Mapping[str, str] | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(detail or self.detail)
        if detail is not None:
            self.detail = detail
        if code is not None:
            self.code = code
        self.headers: dict[str, str] = dict(headers or {})
        # Seed 004's ``error.details``: for bad input, the field and the value sent.
        self.details: dict[str, Any] | None = None


class NotAuthenticated(ServiceError):
    status_code = 401
    code = "UNAUTHORIZED"
    detail = "Could not validate credentials"

    def __init__(self) -> None:
        super().__init__(headers={"WWW-Authenticate": "Bearer"})


class AccessDenied(ServiceError):
    status_code = 403
    code = "FORBIDDEN"
    detail = "Access denied to this job"


class Forbidden(ServiceError):
    """Any other refusal (e.g. an unsigned or expired image URL)."""

    status_code = 403
    code = "FORBIDDEN"
    detail = "Forbidden"


class NotFound(ServiceError):
    status_code = 404
    code = "NOT_FOUND"


class JobNotFound(NotFound):
    code = "JOB_NOT_FOUND"

    def __init__(self, job_id: str) -> None:
        # Echo at most a UUID's worth of what the client sent.
        super().__init__(f"Job {job_id[:64]} not found")


class BadRequest(ServiceError):
    status_code = 400
    code = "BAD_REQUEST"


class InvalidParameter(BadRequest):
    """A bad path or query parameter: names it and echoes at most 64 characters of it."""

    code = "VALIDATION_ERROR"

    def __init__(self, field: str, value: Any, message: str) -> None:
        super().__init__(message)
        shown = value[:64] if isinstance(value, str) else value
        self.details = {"field": field, "value": shown}


class UnsupportedMediaType(ServiceError):
    status_code = 415
    code = "UNSUPPORTED_MEDIA_TYPE"


class PayloadTooLarge(ServiceError):
    status_code = 413
    code = "PAYLOAD_TOO_LARGE"


class RequestTimeout(ServiceError):
    status_code = 408
    code = "REQUEST_TIMEOUT"


class Conflict(ServiceError):
    status_code = 409
    code = "CONFLICT"


class InvalidRequest(ServiceError):
    status_code = 422
    code = "VALIDATION_ERROR"

    def __init__(self, detail: str, errors: list[dict[str, str]] | None = None) -> None:
        super().__init__(detail)
        self.errors = errors or []


class DependencyUnavailable(ServiceError):
    status_code = 503
    code = "SERVICE_UNAVAILABLE"

    def __init__(self, dependency: str, retry_after_s: int = 5) -> None:
        super().__init__(
            f"Service temporarily unavailable: {dependency} is unreachable, retry later",
            headers={"Retry-After": str(retry_after_s)},
        )


class StorageQuotaExceeded(PayloadTooLarge):
    """The caller's stored bytes (uploads and page images) would pass ``STORAGE_QUOTA_MB``.

    A 413, not a 507: the request is refused because of what this caller already stores, which
    the caller can change (delete files); a 5xx would tell clients and monitors that the server
    failed and invite retries that cannot succeed.
    """

    code = "STORAGE_QUOTA_EXCEEDED"

    def __init__(self, used_bytes: int, quota_bytes: int) -> None:
        mb = 1024 * 1024
        super().__init__(
            f"Storage quota exceeded: {used_bytes / mb:.1f} MB of the {quota_bytes // mb} MB "
            "allowed per user (STORAGE_QUOTA_MB) are in use and this upload does not fit; "
            "delete files to make room"
        )


class TooManyActiveJobs(ServiceError):
    """The caller already has ``MAX_ACTIVE_JOBS_PER_USER`` jobs pending or processing."""

    status_code = 429
    code = "TOO_MANY_ACTIVE_JOBS"

    def __init__(self, limit: int, retry_after_s: int) -> None:
        super().__init__(
            f"Too many active jobs: at most {limit} pending or processing per user "
            "(MAX_ACTIVE_JOBS_PER_USER); wait for one to finish or cancel one",
            headers={"Retry-After": str(retry_after_s)},
        )
