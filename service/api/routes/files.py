"""Uploaded PDFs: ``POST /api/v1/files`` (streamed into GridFS) and ``DELETE``."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, Response, delete, post
from litestar.params import FromPath

from service.api.http.dependencies import PrincipalDep, ServicesDep
from service.api.http.multipart import MultipartForm, is_multipart
from service.api.schemas.common import CALLER_ERRORS, error
from service.api.schemas.files import UPLOAD_ERRORS, FileOut, file_out
from service.domain.errors import BadRequest
from service.jobs.files import delete_file, upload_file


class FileController(Controller):
    """Uploaded PDFs."""

    path = "/api/v1/files"
    tags = ["files"]  # noqa: RUF012
    security = [{"BearerToken": []}]  # noqa: RUF012

    @post(
        "/",
        summary="Upload a PDF",
        description=(
            "One PDF in the multipart field `file`, streamed into GridFS within the caller's "
            "upload and storage limits. Its `file_id` then names it in `POST "
            "/api/v1/books/jobs`. Not a PDF: 415; too large: 413."
        ),
        status_code=201,
        request_max_body_size=None,  # enforced while streaming, from MAX_UPLOAD_MB
        opt={"error_prefix": "Failed to upload file"},
        responses={
            400: error("Not multipart, malformed or cut off, no file, or an empty file"),
            413: error("Larger than MAX_UPLOAD_MB, or past STORAGE_QUOTA_MB"),
            415: error("Not a PDF"),
            **UPLOAD_ERRORS,
            **CALLER_ERRORS,
        },
    )
    async def upload(
        self, request: Request[Any, Any, Any], principal: PrincipalDep, services: ServicesDep
    ) -> Response[FileOut]:
        if not is_multipart(request):
            raise BadRequest("Expected multipart/form-data with a 'file' field")
        stored = await upload_file(services, MultipartForm(request), principal.user_id)
        return Response(file_out(stored), status_code=201)

    @delete(
        "/{file_id:str}",
        summary="Delete an uploaded PDF",
        description=(
            "Owner-only: someone else's file is a 404. 409 while a pending or processing job "
            "reads the file. The file's bytes are gone from storage when this answers 204."
        ),
        status_code=204,
        opt={"error_prefix": "Failed to delete file"},
        responses={
            404: error("No such file of the caller's"),
            409: error("A pending or processing job reads the file"),
            **CALLER_ERRORS,
        },
    )
    async def remove(
        self, file_id: FromPath[str], principal: PrincipalDep, services: ServicesDep
    ) -> None:
        await delete_file(services, file_id, principal.user_id)
