"""``backend``: one page store as the worker and the API both see it, GridFS on the session's
mongod and S3 on the session's SeaweedFS, for the worker tests that run on both."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from service.domain.page_keys import chapter_prefix
from service.settings import Settings
from service.store.database import Store
from service.store.page_images import PageStore, create_page_store


@dataclass
class Backend:
    """One page store as the worker and the API both see it."""

    name: str
    overrides: dict[str, Any]  # worker settings
    api: httpx.AsyncClient  # an API whose settings name this store
    store: PageStore  # for counting what is left
    data: Store  # MongoDB's collections with this page store, as the worker's sweeper has them

    async def images(self, chapter_id: str) -> int:
        return await self.store.count(chapter_prefix(chapter_id))


@pytest.fixture(params=["gridfs", "s3"])
async def backend(request, app, client, settings, other_app) -> AsyncIterator[Backend]:
    if request.param == "gridfs":
        yield Backend(
            "gridfs", {}, client, app.state.services.store.images, app.state.services.store
        )
        return
    seaweedfs = request.getfixturevalue("seaweedfs")
    fields = {
        "page_store": "s3",
        "s3_endpoint_url": seaweedfs.endpoint,
        "s3_bucket": seaweedfs.bucket,
        "s3_region": seaweedfs.region,
        "s3_access_key_id": seaweedfs.access_key_id,
        # A SecretStr already: the worker's settings are a model_copy, which does not validate.
        "s3_secret_access_key": SecretStr(seaweedfs.secret_access_key),
    }
    s3 = Settings(**{**settings.model_dump(), **fields})
    store = create_page_store(s3, app.state.services.store.collections.db)
    try:
        async with other_app(s3) as api:
            data = Store.of(app.state.services.store.client, s3, images=store)
            yield Backend("s3", fields, api, store, data)
    finally:
        await store.delete_prefix("chapters/")
        await store.aclose()
