"""S3 image URLs, fetched the way a browser would: presigned GETs against a real SeaweedFS."""

from __future__ import annotations

import asyncio
import os
import re
import uuid

import httpx
import pytest

from service.domain.page_keys import page_key
from service.store.page_images import create_page_store
from tests.store.conftest import s3_settings


@pytest.fixture
async def s3_store(app, seaweedfs):
    store = create_page_store(s3_settings(seaweedfs), app.state.services.store.collections.db)
    yield store
    await store.delete_prefix("chapters/")


@pytest.fixture
async def stored(s3_store):
    """A page image in the bucket: (key, bytes)."""
    key = page_key(str(uuid.uuid4()), 1)
    data = os.urandom(50_000)
    await s3_store.put(key, data, "image/webp")
    return key, data


async def test_a_presigned_url_fetches_the_image_with_no_credentials(s3_store, stored):
    key, data = stored

    url = await s3_store.url(key, 600)
    async with httpx.AsyncClient() as browser:
        response = await browser.get(url)

    assert response.status_code == 200
    assert response.content == data
    assert response.headers["content-type"] == "image/webp"
    assert "X-Amz-Signature=" in url


@pytest.mark.parametrize(
    "tamper",
    [
        lambda url: re.sub(
            r"X-Amz-Signature=(.)", lambda m: "X-Amz-Signature=" + "0f"[m[1] == "0"], url
        ),
        lambda url: url.replace("/page-1.webp", "/page-2.webp"),
        lambda url: url.replace("X-Amz-Expires=600", "X-Amz-Expires=604800"),
        lambda url: url.split("?")[0],
    ],
    ids=["signature", "key", "expiry", "unsigned"],
)
async def test_a_tampered_presigned_url_is_refused_by_the_store(s3_store, stored, tamper):
    key, _ = stored
    url = tamper(await s3_store.url(key, 600))

    async with httpx.AsyncClient() as browser:
        response = await browser.get(url)

    assert response.status_code == 403


async def test_an_expired_presigned_url_is_refused_by_the_store(s3_store, stored):
    key, data = stored
    url = await s3_store.url(key, 1)

    await asyncio.sleep(2.5)  # let it expire (S3 counts whole seconds)
    async with httpx.AsyncClient() as browser:
        response = await browser.get(url)

    assert response.status_code == 403
    assert await (await s3_store.open(key)).read() == data  # refused, not lost


async def test_a_public_base_url_gives_plain_unsigned_urls(app, seaweedfs):
    settings = s3_settings(seaweedfs, page_public_base_url="https://cdn.example.com/pages/")
    store = create_page_store(settings, app.state.services.store.collections.db)

    url = await store.url("chapters/abc/page-1.webp", 600)

    assert url == "https://cdn.example.com/pages/chapters/abc/page-1.webp"
