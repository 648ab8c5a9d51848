"""Request ids: taken from ``X-Request-ID`` (set by nginx) or made here, echoed on the response.

The id is kept in the ASGI scope for handlers and in a context variable for log lines. The same
middleware times the request for the access log and for the HTTP metrics (one wrapper, not three).
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Callable
from typing import Any

from litestar import Request
from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from service.logs import current_request_id

HEADER = b"x-request-id"
_VALID = re.compile(rb"^[A-Za-z0-9._:\-]{1,128}$")

access_log = logging.getLogger("service.access")


def request_id_of(request: Request[Any, Any, Any]) -> str:
    """The id of this request ("-" outside the middleware)."""
    state: dict[str, Any] = request.scope.get("state", {})
    return str(state.get("request_id", "-"))


def _incoming(scope: Scope) -> str:
    for name, value in scope["headers"]:
        if name == HEADER and _VALID.match(value):
            return value.decode()
    return os.urandom(16).hex()  # as unique as a UUID4's hex, without building a UUID


Observer = Callable[[str, str, int, float], None]


def request_id_middleware(app: ASGIApp, observe: Observer | None = None) -> ASGIApp:
    """ASGI middleware: one id per HTTP request, in scope, context, response headers and the
    request's log line; ``observe(method, route template, status, seconds)`` after each."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await app(scope, receive, send)
            return
        request_id = _incoming(scope)
        scope.setdefault("state", {})["request_id"] = request_id
        token = current_request_id.set(request_id)
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", []))
                headers.append((HEADER, request_id.encode()))
                message["headers"] = headers
            await send(message)

        try:
            await app(scope, receive, send_with_id)
        finally:
            if observe is not None:
                template = scope.get("path_template") or scope["path"]
                observe(scope["method"], template, status, time.perf_counter() - started)
            if access_log.isEnabledFor(logging.INFO):
                access_log.info(
                    "request",
                    extra={
                        "method": scope["method"],
                        "path": scope["path"],
                        "status": status,
                        "duration_ms": round((time.perf_counter() - started) * 1000, 2),
                    },
                )
            current_request_id.reset(token)

    return middleware
