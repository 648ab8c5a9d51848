"""Uploaded files: the shape ``POST /api/v1/files`` answers with."""

from __future__ import annotations

import msgspec

from service.api.schemas.common import Timestamp, error, iso_z
from service.store.files import StoredFile


class FileOut(msgspec.Struct, kw_only=True):
    """``POST /api/v1/files``: the stored upload."""

    file_id: str
    filename: str
    size_bytes: int
    sha256: str
    content_type: str
    created_at: Timestamp


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
