"""Fixtures the API's tests share: the database, the uploads' GridFS bucket, an uploaded file."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.pdfs import text_pdf


@pytest.fixture
def db(collections: Any) -> Any:
    """The test database."""
    return collections.db


@pytest.fixture
def gridfs(collections: Any) -> tuple[Any, Any]:
    """The uploads' GridFS bucket: its files and its chunks."""
    return collections.upload_files, collections.upload_chunks


@pytest.fixture
async def file_id(upload: Any) -> str:
    """The id of a two-page PDF alice uploaded."""
    response = await upload(text_pdf(2))
    assert response.status_code == 201, response.text
    return str(response.json()["file_id"])


@pytest.fixture(scope="session")
def pdf() -> bytes:
    """A PDF padded with a comment to 2 MB: eight GridFS chunks, so a cut-off upload has
    written several before it fails."""
    data = text_pdf(3)
    return data + b"%" + b"x" * (2 * 1024 * 1024 - len(data) - 1)
