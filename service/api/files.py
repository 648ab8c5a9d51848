"""``POST /api/v1/files``: upload a PDF, streamed into GridFS."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import msgspec
from litestar import Controller, Request, Response, delete, post
from litestar.params import FromPath

from service.api.dependencies import PrincipalDep, ServicesDep
from service.api.multipart import FilePart, is_multipart, read_form
from service.api.quota import keep_within_quota, quota_error, upload_limit
from service.api.responses import CALLER_ERRORS, Timestamp, error, iso_z
from service.api.state import Services
from service.api.upload_slot import upload_slot
from service.domain.errors import BadRequest, PayloadTooLarge
from service.domain.name import safe_filename
from service.store.files import StoredFile, delete_file, delete_owned_file, store_pdf


class FileOut(msgspec.Struct, kw_only=True):
    """``POST /api/v1/files``: the stored upload."""

    file_id: str
    filename: str
    size_bytes: int
    sha256: str
    content_type: str
    created_at: Timestamp


# Room for the multipart framing and a few small text fields around the file.
FORM_OVERHEAD_BYTES = 1024 * 1024

UPLOAD_ERRORS = {
    408: error("Nothing received for UPLOAD_IDLE_TIMEOUT_S; nothing is kept"),
    429: error("MAX_CONCURRENT_UPLOADS_PER_USER uploads already in progress; see Retry-After"),
}


def file_out(stored: StoredFile) -> FileOut:
    return FileOut(
        file_id=stored.file_id,
        filename=stored.filename,
        size_bytes=stored.size_bytes,
        sha256=stored.sha256,
        content_type=stored.content_type,
        created_at=iso_z(stored.created_at),
    )


async def receive_pdf(
    request: Request[Any, Any, Any], services: Services, user_id: str
) -> tuple[dict[str, str], StoredFile]:
    """Stream a multipart body's one PDF into GridFS; return the form's text fields and the file.

    Holds one of the caller's upload slots (429 when all are taken) while the body streams in;
    any failure, even after the file was stored, leaves nothing in GridFS.
    """
    if not is_multipart(request):
        raise BadRequest("Expected multipart/form-data with a 'file' field")
    settings = services.settings
    limit = await upload_limit(services, user_id)  # a full quota is refused before the body
    done: list[StoredFile] = []

    async def store(part: FilePart, chunks: AsyncIterator[bytes]) -> StoredFile:
        if part.name != "file":
            raise BadRequest(f"Unexpected file field {part.name!r}: send the PDF as 'file'")
        result = await store_pdf(
            services.mongo.db,
            user_id=user_id,
            filename=safe_filename(part.filename),
            content_type="application/pdf",
            chunks=chunks,
            max_bytes=limit,
        )
        done.append(result)
        return result

    async with upload_slot(services.queue, user_id, settings.max_concurrent_uploads_per_user):
        try:
            form = await read_form(
                request,
                max_body=settings.max_upload_bytes + FORM_OVERHEAD_BYTES,
                idle_timeout_s=settings.upload_idle_timeout_s,
                on_file=store,
            )
        except BaseException as exc:
            # The form failed after its file was stored: a second file, a bad field, or a body
            # cut off (or stalled) before its closing boundary.
            for file in done:
                await delete_file(services.mongo.db, file.file_id)
            if isinstance(exc, PayloadTooLarge):  # past MAX_UPLOAD_MB, or past the quota
                raise await quota_error(services, user_id, limit, exc) from None
            raise
    if form.file is None:
        raise BadRequest("Missing 'file' field")
    stored: StoredFile = form.file
    await keep_within_quota(services, stored)
    return form.fields, stored


class FileController(Controller):
    """Uploaded PDFs."""

    path = "/api/v1/files"
    tags = ["files"]  # noqa: RUF012
    security = [{"BearerToken": []}]  # noqa: RUF012

    @post(
        "/",
        summary="Upload a PDF",
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
        _, stored = await receive_pdf(request, services, principal.user_id)
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
        await delete_owned_file(services.mongo.db, file_id, principal.user_id)
