"""Uploaded PDFs: upload one, delete one."""

from __future__ import annotations

from service.domain.errors import Conflict
from service.jobs.context import Context
from service.jobs.uploads import Form, receive_pdf
from service.store.files import StoredFile


async def upload_file(ctx: Context, form: Form, user_id: str) -> StoredFile:
    """Store the form's PDF (see ``receive_pdf``)."""
    _, stored = await receive_pdf(ctx, form, user_id)
    return stored


async def delete_file(ctx: Context, file_id: str, user_id: str) -> None:
    """Delete the caller's upload, its GridFS chunks included.

    404 for a missing file and for someone else's; 409 while a pending or processing job reads
    it (cancel the job first). A job created from the file after this check finds the file gone
    and fails with ``FILE_NOT_FOUND``: nothing is left half-deleted.
    """
    await ctx.store.files.find_owned(file_id, user_id)
    job_id = await ctx.store.jobs.active_job_of_file(user_id, file_id)
    if job_id is not None:
        raise Conflict(
            f"File {file_id[:64]} is being processed by job {job_id}: "
            "cancel the job or wait for it to finish, then delete the file"
        )
    await ctx.store.files.delete(file_id)
