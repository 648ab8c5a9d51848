"""Every error class of the service, in two trees.

Errors a client sees carry their HTTP status, a stable code and a public message. Handlers, use
cases and the store raise them; ``service/api/http/errors.py`` renders them, once, for every
endpoint.

    ServiceError                    (500) INTERNAL_ERROR: base
    ├── NotAuthenticated            (401) UNAUTHORIZED "Could not validate credentials"
    ├── StreamTokenRejected         (401) UNAUTHORIZED: an event stream's ?token= forged/expired
    ├── MetricsTokenRequired        (401) UNAUTHORIZED: /metrics without METRICS_TOKEN
    ├── AccessDenied                (403) FORBIDDEN "Access denied to this job"
    ├── Forbidden                   (403) FORBIDDEN: any other refusal (an unsigned image URL)
    ├── NotFound                    (404) NOT_FOUND: a file, chapter or chunk not the caller's
    │   └── JobNotFound             (404) JOB_NOT_FOUND "Job <job_id> not found"
    ├── BadRequest                  (400) BAD_REQUEST: a malformed request (an empty upload, ...)
    │   ├── InvalidParameter        (400) VALIDATION_ERROR: names the field and the value sent
    │   └── ClientDisconnected      (400) CLIENT_DISCONNECTED: the body stopped half-way
    ├── UnsupportedMediaType        (415) UNSUPPORTED_MEDIA_TYPE: an upload that is not a PDF
    ├── PayloadTooLarge             (413) PAYLOAD_TOO_LARGE: over MAX_UPLOAD_MB / MAX_JSON_BODY_KB
    │   └── StorageQuotaExceeded    (413) STORAGE_QUOTA_EXCEEDED: past STORAGE_QUOTA_MB
    ├── RequestTimeout              (408) REQUEST_TIMEOUT: a body idle, or too slow on average
    ├── Conflict                    (409) CONFLICT: a transition the job's state forbids
    ├── InvalidRequest              (422) VALIDATION_ERROR: a body that fails validation
    │   └── InvalidSearch           (400) VALIDATION_ERROR: a search whose body fails it
    ├── RateLimited                 (429) RATE_LIMITED; Retry-After and RateLimit-* headers
    ├── TooManyActiveJobs           (429) TOO_MANY_ACTIVE_JOBS: MAX_ACTIVE_JOBS_PER_USER
    ├── TooManyUploads              (429) TOO_MANY_UPLOADS: MAX_CONCURRENT_UPLOADS_PER_USER
    ├── TooManyStreams              (429) TOO_MANY_STREAMS: STREAM_MAX_PER_USER
    ├── DependencyUnavailable       (503) SERVICE_UNAVAILABLE: MongoDB or Redis down; Retry-After
    └── StreamsFull                 (503) SERVICE_UNAVAILABLE: STREAM_MAX_OPEN streams open

Messages are safe to show: they never carry an internal message or a stack trace.

The other tree is of signals between our own parts. None reaches a client as such: each is
caught where it is meant to be and turned into one of the errors above, a job's failure, or a
retry.

    Exception
    ├── ExtractionError             a PDF that cannot be processed: its job fails with ``code``
    ├── LeaseLost                   a run's guarded write matched nothing: the job is not its own
    ├── PoolClosed                  the render pool closed while a job waited (worker stopping)
    ├── TokenRejected               an ID token that authenticates nobody (reason, for our log)
    ├── DependencyFailed            a guarded call to Google gave no usable answer
    ├── PageStoreError              the page store refused an operation
    │   └── PageStoreUnavailable    ... or could not be reached in time (retry later)
    ├── MongoUnavailable            MongoDB did not answer within the start-up wait
    ├── InvalidKey (ValueError)     a page image key or prefix no image can have
    ├── OcrError                    OCR cannot run here (no language data, no memory left)
    ├── ModelError                  the embedding model directory cannot be used
    └── EmbeddingError              embedding failed:
        ├── EmbeddingUnavailable    ... the embedding process could not start (permanent or not)
        ├── EmbeddingCrashed        ... it died answering this request
        ├── EmbeddingTimeout        ... this request overran its time limit
        ├── EmbeddingBusy           ... too many requests wait already (a 503 for a search)
        ├── EmbeddingClosed         ... the client was closed
        └── ChunkingFailed          ... the chunking process ended without the chapter's passages
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
        # The chunk-listing contract's ``error.details``: for bad input, the field and the value.
        self.details: dict[str, Any] | None = None


class NotAuthenticated(ServiceError):
    status_code = 401
    code = "UNAUTHORIZED"
    detail = "Could not validate credentials"

    def __init__(self) -> None:
        super().__init__(headers={"WWW-Authenticate": "Bearer"})


class StreamTokenRejected(ServiceError):
    """A stream token that is malformed, forged or expired."""

    status_code = 401
    code = "UNAUTHORIZED"
    detail = "Invalid or expired stream token"


class MetricsTokenRequired(ServiceError):
    """``/metrics`` asked without the right ``Authorization: Bearer <METRICS_TOKEN>``."""

    status_code = 401
    code = "UNAUTHORIZED"
    detail = "Metrics require Authorization: Bearer <METRICS_TOKEN>"

    def __init__(self) -> None:
        super().__init__(headers={"WWW-Authenticate": 'Bearer realm="metrics"'})


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


class ClientDisconnected(BadRequest):
    """The client went away mid-body: nobody reads this answer, but it is counted as a 4xx."""

    code = "CLIENT_DISCONNECTED"
    detail = "The client closed the connection before the request body was complete"


class UnsupportedMediaType(ServiceError):
    status_code = 415
    code = "UNSUPPORTED_MEDIA_TYPE"


class PayloadTooLarge(ServiceError):
    status_code = 413
    code = "PAYLOAD_TOO_LARGE"


class StorageQuotaExceeded(PayloadTooLarge):
    """The caller's stored bytes (uploads, and everything held: page images, copied PDFs, page
    text, search passages; ``service/store/usage.py``) would pass ``STORAGE_QUOTA_MB``.

    A 413, not a 507: the request is refused because of what this caller already stores, which
    the caller can change (delete files); a 5xx would tell clients and monitors that the server
    failed and invite retries that cannot succeed.
    """

    code = "STORAGE_QUOTA_EXCEEDED"

    def __init__(self, used_bytes: int, quota_bytes: int, what: str = "this upload") -> None:
        mb = 1024 * 1024
        super().__init__(
            f"Storage quota exceeded: {used_bytes / mb:.1f} MB of the {quota_bytes // mb} MB "
            f"allowed per user (STORAGE_QUOTA_MB) are in use and {what} does not fit; "
            "delete files or chapters to make room"
        )


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


class InvalidSearch(InvalidRequest):
    """A search request that fails validation: a 400, each bad field named, like a bad query
    string (a search is a read, and its body is its query)."""

    status_code = 400


class RateLimited(ServiceError):
    """Past a per-user request limit; ``headers`` carry where the caller stands (RateLimit-*)."""

    status_code = 429
    code = "RATE_LIMITED"

    def __init__(
        self,
        limit: int,
        window_s: int,
        retry_after_s: int,
        what: str = "requests",
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(
            f"Rate limit exceeded: {limit} {what} per {window_s} seconds",
            headers={**(headers or {}), "Retry-After": str(max(retry_after_s, 1))},
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


class TooManyUploads(ServiceError):
    """The caller already streams ``MAX_CONCURRENT_UPLOADS_PER_USER`` uploads."""

    status_code = 429
    code = "TOO_MANY_UPLOADS"

    def __init__(self, limit: int, retry_after_s: int) -> None:
        super().__init__(
            f"Too many uploads in progress: at most {limit} at once per user; "
            "retry when one has finished",
            headers={"Retry-After": str(retry_after_s)},
        )


class TooManyStreams(ServiceError):
    """The caller already holds ``STREAM_MAX_PER_USER`` event streams in this process."""

    status_code = 429
    code = "TOO_MANY_STREAMS"

    def __init__(self, limit: int) -> None:
        super().__init__(
            f"Too many open event streams: at most {limit} per user. Close one, or poll the job",
            headers={"Retry-After": "5"},
        )


class DependencyUnavailable(ServiceError):
    status_code = 503
    code = "SERVICE_UNAVAILABLE"

    def __init__(self, dependency: str, retry_after_s: int = 5) -> None:
        super().__init__(
            f"Service temporarily unavailable: {dependency} is unreachable, retry later",
            headers={"Retry-After": str(retry_after_s)},
        )


class StreamsFull(ServiceError):
    """``STREAM_MAX_OPEN`` event streams are open in this process: poll instead."""

    status_code = 503
    code = "SERVICE_UNAVAILABLE"

    def __init__(self) -> None:
        super().__init__(
            "Too many event streams open on this server: poll the job, or retry later",
            headers={"Retry-After": "5"},
        )


# --- Signals between our own parts ------------------------------------------------------------


class ExtractionError(Exception):
    """A document that cannot be processed, with a stable code and a public reason."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class LeaseLost(Exception):
    """A write of a run was refused: the job (or the chapter being indexed) is no longer that
    run's: the sweeper took it back, or another run claimed it."""


class PoolClosed(Exception):
    """The render pool was closed while a job still waited for it (the worker is stopping)."""


class TokenRejected(Exception):
    """A token that will not authenticate anyone; ``reason`` is safe to log."""

    def __init__(self, reason: str, *, user_id: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        # Set only once the signature has been verified: before that the uid is the caller's
        # own claim, and logging it would let anyone write any uid into our logs.
        self.user_id = user_id


class DependencyFailed(Exception):
    """Raised by a guarded function: the dependency gave no usable answer (not a verdict)."""


class PageStoreError(Exception):
    """The page store refused or failed an operation."""


class PageStoreUnavailable(PageStoreError):
    """The page store could not be reached in time: the same call may succeed later."""


class MongoUnavailable(RuntimeError):
    """MongoDB did not answer within the start-up wait."""


class InvalidKey(ValueError):
    """A page image key or prefix that no image can have."""


class OcrError(Exception):
    """OCR cannot run here: no language data, no Tesseract, or not enough memory left."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ModelError(Exception):
    """The model directory cannot be used: a missing or malformed file, or a sha256 mismatch."""


class EmbeddingError(Exception):
    """Embedding failed (``service/retrieval/process.py`` says when each kind happens)."""


class EmbeddingUnavailable(EmbeddingError):
    """The embedding process could not start; ``permanent`` when trying again cannot help."""

    def __init__(self, reason: str, *, permanent: bool = False) -> None:
        super().__init__(reason)
        self.permanent = permanent


class EmbeddingCrashed(EmbeddingError):
    """The embedding process died (or ran out of memory) answering this request."""


class EmbeddingTimeout(EmbeddingError):
    """The request overran its time limit; the embedding process was killed."""


class EmbeddingBusy(EmbeddingError):
    """Too many embedding requests wait already."""


class EmbeddingClosed(EmbeddingError):
    """The embedding client was closed."""


class ChunkingFailed(EmbeddingError):
    """The chunking process (``service/retrieval/chunker.py``) died or failed on a chapter."""
