"""Receiving one PDF from a form as it streams in: into GridFS, within the caller's limits.

The form itself is read by the HTTP layer (``service/api/http/multipart.py`` implements ``Form``);
what is stored, under which limits, and what is undone when the form fails is decided here.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

from service.domain.errors import BadRequest, PayloadTooLarge
from service.domain.name import safe_filename
from service.jobs.context import Context
from service.limits.quota import keep_within_quota, quota_error, upload_limit
from service.limits.upload_slots import upload_slot
from service.store.files import StoredFile

# Room for the multipart framing and a few small text fields around the file.
FORM_OVERHEAD_BYTES = 1024 * 1024


@dataclass(frozen=True, slots=True)
class FilePart:
    """A file field's name, the client's file name and its declared content type."""

    name: str
    filename: str
    content_type: str


FileHandler = Callable[[FilePart, AsyncIterator[bytes]], Awaitable[StoredFile]]


@dataclass(slots=True)
class FormData:
    """A form's text fields, and what the file handler returned for its one file part."""

    fields: dict[str, str] = field(default_factory=dict)
    file: StoredFile | None = None


class Form(Protocol):
    """A request body of text fields and at most one file, read as it arrives."""

    async def read(
        self,
        on_file: FileHandler,
        *,
        max_body: int,
        idle_timeout_s: float,
        min_bytes_per_s: int = 0,
        rate_grace_s: float = 0.0,
    ) -> FormData:
        """Parse the body; the file part streams through ``on_file`` as it arrives. A failure
        after ``on_file`` returned (a second file, a bad field, a cut-off body, a body idle for
        ``idle_timeout_s`` or slower than ``min_bytes_per_s`` past ``rate_grace_s``) raises."""
        ...


async def receive_pdf(ctx: Context, form: Form, user_id: str) -> tuple[dict[str, str], StoredFile]:
    """Stream the form's one PDF into GridFS; return the form's text fields and the file.

    Holds one of the caller's upload slots (429 when all are taken) while the body streams in;
    a full quota is refused before the body is read; any failure, even after the file was
    stored, leaves nothing in GridFS.
    """
    settings, store = ctx.settings, ctx.store
    limit = await upload_limit(store, settings, user_id)
    done: list[StoredFile] = []

    async def keep(part: FilePart, chunks: AsyncIterator[bytes]) -> StoredFile:
        if part.name != "file":
            raise BadRequest(f"Unexpected file field {part.name!r}: send the PDF as 'file'")
        result = await store.files.store_pdf(
            user_id=user_id,
            filename=safe_filename(part.filename),
            content_type="application/pdf",
            chunks=chunks,
            max_bytes=limit,
        )
        done.append(result)
        return result

    async with upload_slot(ctx.queue, user_id, settings.max_concurrent_uploads_per_user):
        try:
            form_data = await form.read(
                keep,
                max_body=settings.max_upload_bytes + FORM_OVERHEAD_BYTES,
                idle_timeout_s=settings.upload_idle_timeout_s,
                min_bytes_per_s=settings.upload_min_bytes_per_s,
                rate_grace_s=settings.upload_rate_grace_s,
            )
        except BaseException as exc:
            # The form failed after its file was stored: a second file, a bad field, or a body
            # cut off (or stalled) before its closing boundary.
            for stored in done:
                await store.files.delete(stored.file_id)
            if isinstance(exc, PayloadTooLarge):  # past MAX_UPLOAD_MB, or past the quota
                raise await quota_error(store, settings, user_id, limit, exc) from None
            raise
    if form_data.file is None:
        raise BadRequest("Missing 'file' field")
    await keep_within_quota(store, settings, form_data.file)
    return form_data.fields, form_data.file
