"""Errors the service shows to clients, and the one mapper that renders them.

    ServiceError                    (500) base: carries an HTTP status and a public message
    ├── NotAuthenticated            (401) "Could not validate credentials" + WWW-Authenticate
    ├── AccessDenied                (403) "Access denied to this job"
    ├── Forbidden                   (403) any other refusal (e.g. an unsigned image URL)
    ├── JobNotFound                 (404) "Job <job_id> not found"
    ├── NotFound                    (404) a file, chapter or chunk that is not the caller's
    ├── BadRequest                  (400) a malformed request (e.g. an empty upload)
    ├── UnsupportedMediaType        (415) an upload that is not a PDF
    ├── PayloadTooLarge             (413) an upload over MAX_UPLOAD_MB
    ├── Conflict                    (409) a transition the job's state forbids
    ├── InvalidRequest              (422) a body that fails validation; lists each bad field
    └── DependencyUnavailable       (503) MongoDB or Redis unreachable; Retry-After

Handlers raise these; ``exception_handlers()`` renders every error, expected or not, as
``{"detail": ...}``. An unexpected exception is logged with a request id and reaches the client
as a short public reason plus that id, never a stack trace or an internal message.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from litestar import Request, Response
from litestar.exceptions import HTTPException
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR
from pymongo.errors import ConnectionFailure
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from service.request_id import request_id_of

log = logging.getLogger("service.errors")

NO_STORE = {"Cache-Control": "no-store"}


class ServiceError(Exception):
    """A failure with a status code and a message that is safe to show a client."""

    status_code: int = HTTP_500_INTERNAL_SERVER_ERROR
    detail: str = "Internal server error"

    def __init__(self, detail: str | None = None, *, headers: Mapping[str, str] | None = None):
        super().__init__(detail or self.detail)
        if detail is not None:
            self.detail = detail
        self.headers: dict[str, str] = dict(headers or {})


class NotAuthenticated(ServiceError):
    status_code = 401
    detail = "Could not validate credentials"

    def __init__(self) -> None:
        super().__init__(headers={"WWW-Authenticate": "Bearer"})


class AccessDenied(ServiceError):
    status_code = 403
    detail = "Access denied to this job"


class Forbidden(ServiceError):
    status_code = 403
    detail = "Forbidden"


class JobNotFound(ServiceError):
    status_code = 404

    def __init__(self, job_id: str) -> None:
        # Echo at most a UUID's worth of what the client sent.
        super().__init__(f"Job {job_id[:64]} not found")


class NotFound(ServiceError):
    status_code = 404


class BadRequest(ServiceError):
    status_code = 400


class UnsupportedMediaType(ServiceError):
    status_code = 415


class PayloadTooLarge(ServiceError):
    status_code = 413


class Conflict(ServiceError):
    status_code = 409


class InvalidRequest(ServiceError):
    status_code = 422

    def __init__(self, detail: str, errors: list[dict[str, str]] | None = None) -> None:
        super().__init__(detail)
        self.errors = errors or []


class DependencyUnavailable(ServiceError):
    status_code = 503

    def __init__(self, dependency: str, retry_after_s: int = 5) -> None:
        super().__init__(
            f"Service temporarily unavailable: {dependency} is unreachable, retry later",
            headers={"Retry-After": str(retry_after_s)},
        )


# Exceptions from drivers that mean "the dependency is down", not "we have a bug".
# (ServerSelectionTimeoutError and AutoReconnect are ConnectionFailures.)
REDIS_DOWN: tuple[type[Exception], ...] = (RedisConnectionError, RedisTimeoutError, OSError)


def _json(status: int, body: dict[str, Any], headers: Mapping[str, str]) -> Response[Any]:
    return Response(content=body, status_code=status, headers={**NO_STORE, **headers})


def _service_error(request: Request[Any, Any, Any], exc: ServiceError) -> Response[Any]:
    if exc.status_code >= 500:
        log.warning(
            "request failed: %s",
            exc.detail,
            extra={"request_id": request_id_of(request), "path": request.url.path},
        )
    body: dict[str, Any] = {"detail": exc.detail}
    if isinstance(exc, InvalidRequest) and exc.errors:
        body["errors"] = exc.errors
    return _json(exc.status_code, body, exc.headers)


def _http_exception(request: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    # Litestar's own errors (404 route, 405 method, 400 validation): same {"detail"} shape.
    body: dict[str, Any] = {"detail": exc.detail}
    if exc.status_code == 400 and isinstance(exc.extra, list) and exc.extra:
        # Litestar's {message, key, source} become our {field, message}, as on a 422.
        body["errors"] = [
            {"field": str(item.get("key", "request")), "message": str(item.get("message", ""))}
            for item in exc.extra
            if isinstance(item, dict)
        ]
    return _json(exc.status_code, body, exc.headers or {})


def _mongodb_down(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    return _service_error(request, DependencyUnavailable("database"))


def _unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    if isinstance(exc, ConnectionFailure):
        return _mongodb_down(request, exc)
    request_id = request_id_of(request)
    log.exception("unhandled error", extra={"request_id": request_id, "path": request.url.path})
    prefix = request.route_handler.opt.get("error_prefix", "Request failed")
    return _json(
        HTTP_500_INTERNAL_SERVER_ERROR,
        {"detail": f"{prefix}: internal error (request id {request_id})", "request_id": request_id},
        {},
    )


Handler = Callable[[Request[Any, Any, Any], Any], Response[Any]]


def exception_handlers() -> dict[type[Exception] | int, Handler]:
    """The single exception-to-HTTP mapping, registered once on the app."""
    return {
        ServiceError: _service_error,
        HTTPException: _http_exception,
        ConnectionFailure: _mongodb_down,
        Exception: _unexpected,
    }
