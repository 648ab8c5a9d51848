"""The one exception-to-HTTP mapper, registered once on the app, with two renderers.

Most endpoints answer errors as ``{"detail": ...}`` (plus ``errors`` naming each bad field of a
rejected request). The chunk-listing contract's endpoints (handlers with
``opt={"envelope": True}``) answer every error as
``{"success": false, "data": null, "error": {"code", "message", "details"}}``. The same
exception renders either way: its status, code and public message come from the domain error
tree (``service/domain/errors.py``).

An unexpected exception is logged with the request id and reaches the client as a short public
reason plus that id, never a stack trace or an internal message. MongoDB or the page image store
being unreachable is a 503, not a 500.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from pymongo.errors import ConnectionFailure

from service.api.http.middleware import request_id_of
from service.domain.errors import (
    DependencyUnavailable,
    InvalidParameter,
    InvalidRequest,
    PageStoreUnavailable,
    ServiceError,
)

log = logging.getLogger("service.errors")

NO_STORE = {"Cache-Control": "no-store"}
ENVELOPE = "envelope"  # handler opt: render errors in the chunk-listing contract's envelope


def _wants_envelope(request: Request[Any, Any, Any]) -> bool:
    try:
        return bool(request.route_handler.opt.get(ENVELOPE))
    except (KeyError, AttributeError):  # no route matched (a 404 for an unknown path)
        return False


def _json(status: int, body: dict[str, Any], headers: Mapping[str, str]) -> Response[Any]:
    return Response(content=body, status_code=status, headers={**NO_STORE, **headers})


def _render(request: Request[Any, Any, Any], exc: ServiceError) -> Response[Any]:
    if _wants_envelope(request):
        error: dict[str, Any] = {"code": exc.code, "message": exc.detail}
        if exc.details is not None:
            error["details"] = exc.details
        body: dict[str, Any] = {"success": False, "data": None, "error": error}
    else:
        body = {"detail": exc.detail}
        if isinstance(exc, InvalidRequest) and exc.errors:
            body["errors"] = exc.errors
        elif isinstance(exc, InvalidParameter) and exc.details:  # as Litestar's own 400s
            body["errors"] = [{"field": str(exc.details["field"]), "message": exc.detail}]
    return _json(exc.status_code, body, exc.headers)


def _service_error(request: Request[Any, Any, Any], exc: ServiceError) -> Response[Any]:
    if exc.status_code >= 500:
        log.warning(
            "request failed: %s",
            exc.detail,
            extra={"request_id": request_id_of(request), "path": request.url.path},
        )
    return _render(request, exc)


def _http_exception(request: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    """Litestar's own errors (404 route, 405 method, 400 validation), in the same shapes."""
    problems = (
        [item for item in exc.extra if isinstance(item, dict)]
        if isinstance(exc.extra, list)
        else []
    )
    if _wants_envelope(request):
        if isinstance(exc, ValidationException):
            field = str(problems[0].get("key", "query")) if problems else "query"
            message = f"Invalid {field}" + (f": {problems[0]['message']}" if problems else "")
            invalid = InvalidParameter(field, request.query_params.get(field), message)
            return _render(request, invalid)
        code = "METHOD_NOT_ALLOWED" if exc.status_code == 405 else "BAD_REQUEST"
        error = ServiceError(exc.detail, code=code, headers=exc.headers or {})
        error.status_code = exc.status_code
        return _render(request, error)
    body: dict[str, Any] = {"detail": exc.detail}
    if exc.status_code == 400 and problems:
        # Litestar's {message, key, source} become our {field, message}, as on a 422.
        body["errors"] = [
            {"field": str(item.get("key", "request")), "message": str(item.get("message", ""))}
            for item in problems
        ]
    return _json(exc.status_code, body, exc.headers or {})


def _unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    if isinstance(exc, ConnectionFailure):
        return _service_error(request, DependencyUnavailable("database"))
    if isinstance(exc, PageStoreUnavailable):  # a delete that could not reach the image store
        return _service_error(request, DependencyUnavailable("page image storage"))
    request_id = request_id_of(request)
    log.exception("unhandled error", extra={"request_id": request_id, "path": request.url.path})
    prefix = request.route_handler.opt.get("error_prefix", "Request failed")
    message = f"{prefix}: internal error (request id {request_id})"
    if _wants_envelope(request):
        error = {
            "code": "INTERNAL_ERROR",
            "message": message,
            "details": {"request_id": request_id},
        }
        return _json(500, {"success": False, "data": None, "error": error}, {})
    return _json(500, {"detail": message, "request_id": request_id}, {})


Handler = Callable[[Request[Any, Any, Any], Any], Response[Any]]


def exception_handlers() -> dict[type[Exception] | int, Handler]:
    """The single exception-to-HTTP mapping, registered once on the app."""
    return {
        ServiceError: _service_error,
        HTTPException: _http_exception,
        ConnectionFailure: _unexpected,
        PageStoreUnavailable: _unexpected,
        Exception: _unexpected,
    }
