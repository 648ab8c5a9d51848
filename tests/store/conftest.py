"""``page_store``: the same tests run on both backends, GridFS on the session's mongod and S3 on
the session's SeaweedFS."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from pymongo import AsyncMongoClient

from service.settings import Settings
from service.store.page_images import PageStore, create_page_store
from tests.support.seaweed import SeaweedFS


def s3_settings(seaweedfs: SeaweedFS, **overrides: Any) -> Settings:
    """Settings that point the page store at the test SeaweedFS."""
    fields: dict[str, Any] = {
        "page_store": "s3",
        "s3_endpoint_url": seaweedfs.endpoint,
        "s3_bucket": seaweedfs.bucket,
        "s3_region": seaweedfs.region,
        "s3_access_key_id": seaweedfs.access_key_id,
        "s3_secret_access_key": seaweedfs.secret_access_key,
    }
    return Settings(**{**fields, **overrides})


def unreachable_mongo(directory: Path) -> AsyncMongoClient[dict[str, Any]]:
    """A client of a MongoDB that is not there: a unix socket path nothing listens on.

    Not a closed TCP port: PyMongo's monitor, cancelled by ``close()`` while it awaits a TCP
    connect, leaks that socket (a ResourceWarning in a later test). A unix socket connect
    fails before the monitor ever yields.
    """
    path = quote(str(directory / "absent-mongod.sock"), safe="")
    return AsyncMongoClient(
        f"mongodb://{path}/?directConnection=true", serverSelectionTimeoutMS=200
    )


@pytest.fixture(params=["gridfs", "s3"])
async def page_store(request: pytest.FixtureRequest, app: Any) -> AsyncIterator[PageStore]:
    """A page store of each backend, empty at the start of the test."""
    db = app.state.services.store.collections.db
    if request.param == "gridfs":
        store = create_page_store(Settings(page_store="gridfs"), db)
    else:
        store = create_page_store(s3_settings(request.getfixturevalue("seaweedfs")), db)
    yield store
    # GridFS collections are emptied after every test (tests/conftest.py); the bucket is not.
    if store.backend == "s3":
        await store.delete_prefix("chapters/")
    await store.aclose()
