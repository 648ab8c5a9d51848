"""Streaming ``multipart/form-data``: file parts are handed on chunk by chunk, never buffered.

Litestar's own form parsing reads the whole body into memory first, which a 100 MB PDF must
not do; python-multipart's push parser lets the upload flow straight into GridFS.

A body is complete only when its closing boundary arrives: python-multipart's ``finalize()``
accepts a body cut off anywhere, so the reader counts the parser's ``on_end`` and refuses a body
without it (400), and the file handler's work is undone by the exception it sees.

A part's ``Content-Disposition`` is read here (``disposition``), not by python-multipart, which
drops ``filename*``: a part is a file when it has ``filename`` or ``filename*``, and its name is
decoded as clients actually send it:

- ``filename="..."``: a quoted string (RFC 7578 section 4.2, RFC 9110 quoted-string), ``\\"``
  and ``\\\\`` undone; its bytes are UTF-8 (what browsers send), and the three characters browsers
  percent-encode in it (WHATWG HTML "multipart/form-data encoding": ``"`` as ``%22``, CR as
  ``%0D``, LF as ``%0A``) are decoded, so ``my "best".pdf`` from Chromium is not stored as
  ``my %22best%22.pdf``. No other ``%XX`` is decoded: a name may contain ``%41`` itself.
- ``filename*=UTF-8''na%C3%AFve.pdf``: the RFC 8187 extended value (RFC 6266 section 4.3: it
  wins over ``filename``). RFC 7578 tells senders not to use it, yet some libraries do.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import unquote_to_bytes

from litestar import Request
from python_multipart.multipart import MultipartParser, parse_options_header

from service.api.http.body_stream import body_chunks
from service.domain.errors import BadRequest, PayloadTooLarge
from service.jobs.uploads import FileHandler, FilePart, FormData

MAX_FIELD_BYTES = 64 * 1024
MAX_FIELDS = 32

# One parameter of a Content-Disposition: name = token | quoted-string (RFC 9110 section 5.6).
_PARAMETER = re.compile(
    rb';\s*([!#$%&\'*+.^_`|~0-9A-Za-z-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^;\s]*))', re.DOTALL
)
# Only \\ and \" are undone: browsers escape nothing with a backslash, and an old browser's
# full Windows path (C:\Users\x.pdf) must keep its separators for safe_filename to cut.
_QUOTED_PAIR = re.compile(rb'\\([\\"])')
# What browsers percent-encode in a quoted file name (WHATWG HTML), and nothing else.
_BROWSER_ESCAPES = {b"%22": b'"', b"%0D": b"\r", b"%0A": b"\n", b"%0d": b"\r", b"%0a": b"\n"}
_BROWSER_ESCAPE = re.compile(rb"%22|%0[DAda]")
# RFC 8187 ext-value: charset ' [ language ] ' value-chars
_EXT_VALUE = re.compile(rb"([!#$%&+^_`{}~0-9A-Za-z-]+)'[^']*'(.*)", re.DOTALL)


def _ext_value(raw: bytes) -> str | None:
    """An RFC 8187 ``charset'lang'pct-encoded`` value, decoded; None when malformed."""
    match = _EXT_VALUE.fullmatch(raw)
    if match is None:
        return None
    charset = match.group(1).decode("ascii").lower()
    if charset not in {"utf-8", "iso-8859-1"}:  # the two RFC 8187 requires; others: unknown
        return None
    return unquote_to_bytes(match.group(2)).decode(charset, "replace")


def disposition(header: bytes) -> tuple[bytes, str | None, str | None]:
    """A part's ``Content-Disposition``: its type (lower case), its ``name`` and its file name
    (``filename*`` over ``filename``; None: not a file part). See the module docstring."""
    kind, _, rest = header.partition(b";")
    params: dict[bytes, bytes] = {}
    for match in _PARAMETER.finditer(b";" + rest):
        key = match.group(1).lower()
        if match.group(2) is not None:
            value = _QUOTED_PAIR.sub(rb"\1", match.group(2))
            if key == b"filename":
                value = _BROWSER_ESCAPE.sub(lambda m: _BROWSER_ESCAPES[m.group(0)], value)
        else:
            value = match.group(3)
        params.setdefault(key, value)  # the first of a repeated parameter
    name = params.get(b"name")
    filename = None
    if b"filename*" in params:
        filename = _ext_value(params[b"filename*"])
    if filename is None and b"filename" in params:
        filename = params[b"filename"].decode("utf-8", "replace")
    elif filename is None and b"filename*" in params:
        filename = ""  # a file part whose name could not be read: named by safe_filename
    return (
        kind.strip().lower(),
        None if name is None else name.decode("utf-8", "replace"),
        filename,
    )


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
        kind_of_part, name, filename = disposition(value.get("content-disposition", b""))
        if kind_of_part != b"form-data" or name is None:
            raise BadRequest("Malformed multipart part: no form-data name")
        if filename is not None:
            if seen_file:
                raise BadRequest("Send exactly one file per request")
            seen_file = True
            content_type = value.get("content-type", b"application/octet-stream")
            part = FilePart(
                name=name, filename=filename, content_type=content_type.decode("latin-1")
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
