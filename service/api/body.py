"""JSON request bodies validated against a schema, every bad field named in one 422."""

from __future__ import annotations

from typing import Any, TypeVar

import msgspec
from litestar import Request

from service.domain.errors import InvalidRequest

S = TypeVar("S", bound=msgspec.Struct)

Problem = dict[str, str]


async def json_body(request: Request[Any, Any, Any]) -> Any:
    """The decoded body; 422 when it is not JSON."""
    raw = await request.body()
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
    problems += [
        {"field": prefix + name, "message": "unknown field"} for name in data if name not in fields
    ]
    return problems


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
