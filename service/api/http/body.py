"""JSON request bodies validated against a schema, every bad field named in one 422.

A body is read as it arrives and refused (413) once it passes ``MAX_JSON_BODY_KB``, before it is
held whole; its nesting is measured on the raw bytes before it is decoded, since the decoder
raises ``RecursionError`` about 1,000 levels down and deep documents cost stack on every walk.
"""

from __future__ import annotations

import re
from itertools import accumulate
from typing import Any, TypeVar, get_args

import msgspec
from litestar import Request

from service.api.http.body_stream import body_chunks
from service.api.http.dependencies import services_of
from service.api.schemas.common import PRINTABLE, error
from service.domain.errors import BadRequest, InvalidRequest, PayloadTooLarge
from service.domain.name import identifier_problem

S = TypeVar("S", bound=msgspec.Struct)

Problem = dict[str, str]

MAX_JSON_DEPTH = 32  # our schemas nest two levels; anything deeper is not a request of ours

# A JSON string (escapes included) and every byte that is not a bracket, removed before counting.
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKETS = bytes(byte for byte in range(256) if byte not in b"[]{}")
_LEVEL = {ord("["): 1, ord("{"): 1, ord("]"): -1, ord("}"): -1}


JSON_BODY_ERRORS = {
    400: error(f"Body nested deeper than {MAX_JSON_DEPTH} levels"),
    408: error("Body not received within UPLOAD_IDLE_TIMEOUT_S"),
    413: error("Body larger than MAX_JSON_BODY_KB"),
}


def nesting_depth(raw: bytes | bytearray) -> int:
    """How deep arrays and objects nest in the JSON text ``raw`` (brackets in strings skipped)."""
    brackets = _STRING.sub(b"", raw).translate(None, _NOT_BRACKETS)
    return max(accumulate(_LEVEL[byte] for byte in brackets), default=0)


async def json_body(request: Request[Any, Any, Any]) -> Any:
    """The decoded body: 413 past ``MAX_JSON_BODY_KB``, 408 when it stalls, 400 when nested
    deeper than ``MAX_JSON_DEPTH``, 422 when it is not JSON."""
    settings = services_of(request).settings
    limit_kb = settings.max_json_body_kb
    raw = bytearray()
    async for chunk in body_chunks(
        request,
        max_bytes=limit_kb * 1024,
        idle_timeout_s=settings.upload_idle_timeout_s,
        too_large=lambda: PayloadTooLarge(f"JSON body exceeds {limit_kb} KB"),
        min_bytes_per_s=settings.upload_min_bytes_per_s,
        rate_grace_s=settings.upload_rate_grace_s,
    ):
        raw += chunk
    if nesting_depth(raw) > MAX_JSON_DEPTH:
        raise BadRequest(f"JSON body nested deeper than {MAX_JSON_DEPTH} levels")
    try:
        return msgspec.json.decode(raw)
    except msgspec.DecodeError:
        raise InvalidRequest(
            "Request body must be JSON", [{"field": "body", "message": "invalid JSON"}]
        ) from None


def _is_struct(kind: Any) -> bool:
    return isinstance(kind, type) and issubclass(kind, msgspec.Struct)


def _problems(
    schema: type[msgspec.Struct], data: dict[str, Any], prefix: str, strict: bool
) -> list[Problem]:
    """Missing, unknown and invalid fields, nested objects included, with dotted paths."""
    problems: list[Problem] = []
    fields = {field.encode_name: field for field in msgspec.structs.fields(schema)}
    for name, field in fields.items():
        path = prefix + name
        value = data.get(name)
        if value is None or value == "":
            if field.required:
                problems.append({"field": path, "message": "required"})
        elif _is_struct(field.type):
            if isinstance(value, dict):
                problems += _problems(field.type, value, path + ".", strict)
            else:
                problems.append({"field": path, "message": "must be an object"})
        else:
            try:
                msgspec.convert(value, field.type, strict=strict)
            except msgspec.ValidationError as exc:
                problems.append({"field": path, "message": str(exc).partition(" - at `$")[0]})
            else:
                message = _printable_problem(field.type, value)
                if message:
                    problems.append({"field": path, "message": message})
    problems += [
        {"field": prefix + name, "message": "unknown field"} for name in data if name not in fields
    ]
    return problems


def _printable_problem(kind: Any, value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    # The marker sits on the Annotated type, which an optional field wraps in a union.
    if PRINTABLE in get_args(kind) or any(PRINTABLE in get_args(arm) for arm in get_args(kind)):
        return identifier_problem(value)
    return None


def validated(schema: type[S], data: Any, *, strict: bool = True) -> S:
    """``data`` as ``schema``; 422 naming each bad field (``payload.file_id``, ...).

    ``strict=False`` for form fields, which arrive as strings (``"3"``, ``"true"``); absent,
    null and empty optional fields take their defaults.
    """
    if not isinstance(data, dict):
        raise InvalidRequest(
            "Request body must be a JSON object", [{"field": "body", "message": "not an object"}]
        )
    problems = _problems(schema, data, "", strict)
    if problems:
        raise InvalidRequest("Invalid request body", problems)
    return msgspec.convert(_present(data), schema, strict=strict)


def _present(data: dict[str, Any]) -> dict[str, Any]:
    """Without the null and empty fields, at every depth: they take their defaults."""
    return {
        name: _present(value) if isinstance(value, dict) else value
        for name, value in data.items()
        if value is not None and value != ""
    }


def idempotency_key(request: Request[Any, Any, Any]) -> str | None:
    """The request's ``Idempotency-Key`` header; 422 when it is empty or over 255 characters."""
    key = request.headers.get("idempotency-key")
    if key is not None and not 1 <= len(key) <= 255:
        raise InvalidRequest(
            "Invalid Idempotency-Key",
            [{"field": "Idempotency-Key", "message": "1 to 255 characters"}],
        )
    return key
