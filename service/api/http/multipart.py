"""Streaming ``multipart/form-data``: file parts are handed on chunk by chunk, never buffered.

Litestar's own form parsing reads the whole body into memory first, which a 100 MB PDF must
not do; python-multipart's push parser lets the upload flow straight into GridFS.

A body is complete only when its closing boundary arrives: python-multipart's ``finalize()``
accepts a body cut off anywhere, so the reader counts the parser's ``on_end`` and refuses a body
without it (400), and the file handler's work is undone by the exception it sees.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from litestar import Request
from python_multipart.multipart import MultipartParser, parse_options_header

from service.api.http.body_stream import body_chunks
from service.domain.errors import BadRequest, PayloadTooLarge
from service.jobs.uploads import FileHandler, FilePart, FormData

MAX_FIELD_BYTES = 64 * 1024
MAX_FIELDS = 32


def is_multipart(request: Request[Any, Any, Any]) -> bool:
    content_type, _ = parse_options_header(request.headers.get("content-type", ""))
    return content_type == b"multipart/form-data"


async def _events(
    request: Request[Any, Any, Any],
    max_body: int,
    idle_timeout_s: float,
    min_bytes_per_s: int = 0,
    rate_grace_s: float = 0.0,
) -> AsyncIterator[tuple[str, Any]]:
    """("headers", dict) / ("data", bytes) / ("end", None) events, as the body streams in.

    400 when the body is malformed or ends before its closing boundary.
    """
    _, params = parse_options_header(request.headers.get("content-type", ""))
    boundary = params.get(b"boundary")
    if not boundary:
        raise BadRequest("Expected multipart/form-data with a boundary")
    pending: list[tuple[str, Any]] = []
    ended: list[bool] = []  # the parser saw the closing boundary
    headers: dict[str, bytes] = {}
    header_field = bytearray()
    header_value = bytearray()

    def on_header_end() -> None:
        headers[bytes(header_field).lower().decode("latin-1")] = bytes(header_value)
        header_field.clear()
        header_value.clear()

    callbacks: Any = {
        "on_part_begin": headers.clear,
        "on_header_field": lambda data, start, end: header_field.extend(data[start:end]),
        "on_header_value": lambda data, start, end: header_value.extend(data[start:end]),
        "on_header_end": on_header_end,
        "on_headers_finished": lambda: pending.append(("headers", dict(headers))),
        "on_part_data": lambda data, start, end: pending.append(("data", bytes(data[start:end]))),
        "on_part_end": lambda: pending.append(("end", None)),
        "on_end": lambda: ended.append(True),
    }
    parser = MultipartParser(boundary, callbacks)
    chunks = body_chunks(
        request,
        max_bytes=max_body,
        idle_timeout_s=idle_timeout_s,
        too_large=lambda: PayloadTooLarge(f"Request body exceeds {max_body // (1024 * 1024)} MB"),
        min_bytes_per_s=min_bytes_per_s,
        rate_grace_s=rate_grace_s,
    )
    async for chunk in chunks:
        try:
            parser.write(chunk)
        except Exception:  # python-multipart's MultipartParseError and friends
            raise BadRequest("Malformed multipart body") from None
        for event in pending:
            yield event
        pending.clear()
    try:
        parser.finalize()
    except Exception:
        raise BadRequest("Malformed multipart body") from None
    if not ended:
        raise BadRequest("Multipart body ended before its closing boundary")
    for event in pending:
        yield event


class MultipartForm:
    """The request's ``multipart/form-data`` body, as the use cases read a form
    (``service.jobs.uploads.Form``)."""

    def __init__(self, request: Request[Any, Any, Any]) -> None:
        self._request = request

    async def read(
        self,
        on_file: FileHandler,
        *,
        max_body: int,
        idle_timeout_s: float,
        min_bytes_per_s: int = 0,
        rate_grace_s: float = 0.0,
    ) -> FormData:
        """See ``read_form``."""
        return await read_form(
            self._request, max_body=max_body, idle_timeout_s=idle_timeout_s, on_file=on_file,
            min_bytes_per_s=min_bytes_per_s, rate_grace_s=rate_grace_s,
        )  # fmt: skip


async def read_form(
    request: Request[Any, Any, Any],
    *,
    max_body: int,
    idle_timeout_s: float,
    on_file: FileHandler,
    min_bytes_per_s: int = 0,
    rate_grace_s: float = 0.0,
) -> FormData:
    """Parse the body; the (single) file part streams through ``on_file`` as it arrives.

    A failure after ``on_file`` returned (a second file, a bad field, a missing closing
    boundary) raises here: the caller removes what ``on_file`` stored.
    """
    form = FormData()
    events = _events(request, max_body, idle_timeout_s, min_bytes_per_s, rate_grace_s)
    seen_file = False
    async for kind, value in events:
        if kind != "headers":
            continue
        disposition, params = parse_options_header(value.get("content-disposition", b""))
        if disposition != b"form-data" or b"name" not in params:
            raise BadRequest("Malformed multipart part: no form-data name")
        name = params[b"name"].decode("utf-8", "replace")
        if b"filename" in params:
            if seen_file:
                raise BadRequest("Send exactly one file per request")
            seen_file = True
            content_type = value.get("content-type", b"application/octet-stream")
            part = FilePart(
                name=name,
                filename=params[b"filename"].decode("utf-8", "replace"),
                content_type=content_type.decode("latin-1"),
            )

            async def part_data() -> AsyncIterator[bytes]:
                async for inner_kind, inner_value in events:
                    if inner_kind == "end":
                        return
                    yield inner_value

            form.file = await on_file(part, part_data())
            continue
        data = bytearray()
        async for inner_kind, inner_value in events:
            if inner_kind == "end":
                break
            data.extend(inner_value)
            if len(data) > MAX_FIELD_BYTES:
                raise BadRequest(f"Form field {name!r} is too long")
        if len(form.fields) >= MAX_FIELDS:
            raise BadRequest("Too many form fields")
        form.fields[name] = data.decode("utf-8", "replace")
    return form
