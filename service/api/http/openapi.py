"""Request bodies in the OpenAPI document for the handlers that read their body themselves.

Job creation reads the raw body so that every bad field is named in one 422, and
uploads stream multipart bodies into GridFS; Litestar cannot infer either from a signature, so
their bodies are described here, once the app exists, from the same msgspec schemas.
"""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Litestar, Request
from litestar.openapi.plugins import SwaggerRenderPlugin
from litestar.openapi.spec import OpenAPIMediaType, Reference, RequestBody

from service.api.schemas.events import PageEventOut
from service.api.schemas.job_detail import JobCreateIn
from service.api.schemas.jobs import CreateJobIn
from service.api.schemas.search import SearchIn

REF = "#/components/schemas/{name}"

PDF_PART = {"type": "string", "format": "binary", "description": "The PDF (application/pdf)"}


def _multipart(**fields: Any) -> OpenAPIMediaType:
    return OpenAPIMediaType(
        schema={"type": "object", "properties": fields, "required": list(fields)}  # type: ignore[arg-type]
    )


def _json(schema: type[msgspec.Struct]) -> OpenAPIMediaType:
    return OpenAPIMediaType(schema=Reference(ref=REF.format(name=schema.__name__)))


BODIES: dict[tuple[str, str], RequestBody] = {
    ("/api/v1/jobs", "post"): RequestBody(
        content={"application/json": _json(JobCreateIn)},
        required=True,
        description="The job router's JobCreate: a title, and the file and book of the job",
    ),
    ("/api/v1/books/jobs", "post"): RequestBody(
        content={
            "application/json": _json(CreateJobIn),
            "multipart/form-data": _multipart(
                book_id={"type": "string", "minLength": 1, "maxLength": 128}, file=PDF_PART
            ),
        },
        required=True,
        description="An uploaded file's id, or the PDF itself in a form",
    ),
    ("/api/v1/files", "post"): RequestBody(
        content={"multipart/form-data": _multipart(file=PDF_PART)},
        required=True,
        description="One PDF in the form field `file`",
    ),
    ("/api/v1/search", "post"): RequestBody(
        content={"application/json": _json(SearchIn)},
        required=True,
        description="The query, and the scope: a book, some chapters, or every chapter",
    ),
}


def document_request_bodies(app: Litestar) -> None:
    """Add the request bodies and their schemas to ``app``'s OpenAPI document."""
    document = app.openapi_schema
    # PageEventOut: the data of the event stream's `page` events (the stream is a string).
    _, components = msgspec.json.schema_components(
        (JobCreateIn, CreateJobIn, SearchIn, PageEventOut), ref_template=REF
    )
    assert document.components is not None
    if not isinstance(document.components.schemas, dict):
        document.components.schemas = {}
    for name, schema in components.items():
        document.components.schemas.setdefault(name, schema)
    for (path, method), body in BODIES.items():
        item = document.paths[path] if document.paths else None
        operation = getattr(item, method, None)
        if operation is None:
            raise LookupError(f"no {method.upper()} {path} to describe")
        operation.request_body = body


VENDOR_URL = "/web/vendor/"
NOT_INSTALLED = b"""<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">
<title>API docs not installed</title><link rel="icon" href="data:,"></head><body>
<h1>The interactive API docs are not installed on this server</h1>
<p>Swagger UI is served from the npm package <code>swagger-ui-dist</code>, installed by
<code>make web-vendor</code> (no CDN). The OpenAPI document itself is at
<a href="/schema/openapi.json">/schema/openapi.json</a>.</p></body></html>"""


class OfflineSwagger(SwaggerRenderPlugin):
    """Swagger UI at ``/schema`` and ``/schema/swagger`` from this API's own copy
    (``/web/vendor/``, ``make web-vendor``) instead of a CDN, so the docs work offline; a page
    that says how to install it when it is not there (``available`` false)."""

    def __init__(self, *, available: bool) -> None:
        super().__init__(
            js_url=VENDOR_URL + "swagger-ui-bundle.js",
            css_url=VENDOR_URL + "swagger-ui.css",
            standalone_preset_js_url=VENDOR_URL + "swagger-ui-standalone-preset.js",
            favicon="<link rel='icon' href='data:,'>",  # Litestar's default is on a CDN
            path="/swagger",
        )
        self.available = available

    def render(self, request: Request[Any, Any, Any], openapi_schema: dict[str, Any]) -> bytes:
        if not self.available:
            return NOT_INSTALLED
        return super().render(request, openapi_schema)
