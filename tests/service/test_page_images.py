"""``GET /api/v1/page-images/{key}``: GridFS images for holders of a signed URL, no Authorization."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import time
import uuid
from contextlib import asynccontextmanager
from urllib.parse import urlsplit

import httpx
import pydantic
import pytest

from service.api.http.image_urls import PAGE_IMAGES_PATH, api_origin, page_image_url
from service.domain.page_keys import chapter_prefix, page_key
from service.domain.signing import sign
from service.settings import Settings
from service.store.database import Store
from service.store.page_images import create_page_store
from service.store.page_images.gridfs_store import GridFSPageStore
from tests.store.conftest import s3_settings, unreachable_mongo

ORIGIN = "http://testserver"
NOT_FOUND = {"detail": "Page image not found"}


@pytest.fixture
def services(app):
    return app.state.services


@pytest.fixture
async def stored(services):
    """A page image in GridFS: (key, bytes)."""
    key = page_key(str(uuid.uuid4()), 1)
    data = os.urandom(300_000)  # two GridFS chunks
    await services.store.images.put(key, data, "image/webp", owner="alice")
    return key, data


async def signed_url(services, key: str) -> str:
    """The image's URL as a chapter read hands it out, relative to the test client."""
    url = await page_image_url(services, key, origin=ORIGIN)
    assert url.startswith(f"{ORIGIN}{PAGE_IMAGES_PATH}/{key}?")
    return url.removeprefix(ORIGIN)


def url_with(key: str, expires: int, secret: str) -> str:
    return f"{PAGE_IMAGES_PATH}/{key}?expires={expires}&sig={sign(key, expires, secret)}"


async def test_a_signed_url_serves_the_image_without_authorization(client, services, stored):
    key, data = stored

    response = await client.get(await signed_url(services, key))

    assert response.status_code == 200
    assert response.content == data
    assert response.headers["content-type"] == "image/webp"
    assert response.headers["content-length"] == str(len(data))
    assert response.headers["etag"] == f'"{hashlib.sha256(data).hexdigest()}"'
    assert response.headers["x-content-type-options"] == "nosniff"
    cache_control = response.headers["cache-control"]
    assert cache_control.startswith("private, max-age=")
    max_age = int(cache_control.removeprefix("private, max-age="))
    assert 0 < max_age <= services.settings.page_url_ttl_s


async def test_the_cache_lifetime_never_outlives_the_signature(client, services, stored):
    key, _ = stored
    secret = services.settings.page_url_secret.get_secret_value()
    expires = int(time.time()) + 120  # a URL with two minutes left, under a one-hour TTL

    response = await client.get(url_with(key, expires, secret))

    assert response.status_code == 200
    assert 0 < int(response.headers["cache-control"].split("max-age=")[1]) <= 120


async def test_if_none_match_with_the_etag_is_a_304_without_a_body(client, services, stored):
    key, _ = stored
    url = await signed_url(services, key)
    etag = (await client.get(url)).headers["etag"]

    response = await client.get(url, headers={"If-None-Match": etag})

    assert response.status_code == 304
    assert response.content == b""
    assert response.headers["etag"] == etag
    assert response.headers["cache-control"].startswith("private, max-age=")


async def test_a_stale_etag_gets_the_new_image(client, services, stored):
    key, _ = stored
    url = await signed_url(services, key)
    old_etag = (await client.get(url)).headers["etag"]
    replacement = os.urandom(1000)
    await services.store.images.put(key, replacement, "image/webp", owner="alice")

    response = await client.get(url, headers={"If-None-Match": old_etag})

    assert response.status_code == 200
    assert response.content == replacement


async def test_a_jpeg_image_is_served_as_jpeg(client, services):
    key = page_key(str(uuid.uuid4()), 4, "jpeg")
    await services.store.images.put(
        key, b"\xff\xd8\xff" + os.urandom(100), "image/jpeg", owner="alice"
    )

    response = await client.get(await signed_url(services, key))

    assert response.status_code == 200
    assert response.headers["content-type"] == "image/jpeg"


@pytest.mark.parametrize(
    ("tamper", "detail"),
    [
        (lambda url: url.replace("sig=", "sig=A"), "Image URL signature is invalid"),
        (lambda url: url.replace("page-1.webp", "page-2.webp"), "Image URL signature is invalid"),
        (lambda url: url.replace("expires=", "expires=1"), "Image URL signature is invalid"),
        (lambda url: url.replace("expires=", "expires=x"), "Image URL signature is invalid"),
        (
            lambda url: url.split("?")[0],
            "Image URL is not signed: request it again from the chapter",
        ),
        (
            lambda url: url.split("&sig=")[0],
            "Image URL is not signed: request it again from the chapter",
        ),
    ],
    ids=["signature", "key", "expiry", "expiry-not-a-number", "unsigned", "no-signature"],
)
async def test_a_tampered_or_unsigned_url_is_403_json_and_the_image_stays(
    client, services, stored, tamper, detail
):
    key, data = stored
    # Another image the tampered key could point at, so that a 403 is not a 404 in disguise.
    await services.store.images.put(
        key.replace("page-1", "page-2"), data, "image/webp", owner="alice"
    )
    url = tamper(await signed_url(services, key))

    response = await client.get(url)

    assert response.status_code == 403
    assert response.json() == {"detail": detail}
    assert response.headers["cache-control"] == "no-store"
    assert await (await services.store.images.open(key)).read() == data


@pytest.mark.parametrize("spelling", ["+{}", "0{}", " {}", "{} ", "{}\t", "00{}"])
async def test_an_expiry_spelled_otherwise_than_signed_is_403(client, services, stored, spelling):
    key, _ = stored
    secret = services.settings.page_url_secret.get_secret_value()
    expires = int(time.time()) + 600
    signature = sign(key, expires, secret)

    response = await client.get(
        f"{PAGE_IMAGES_PATH}/{key}", params={"expires": spelling.format(expires), "sig": signature}
    )

    assert response.status_code == 403
    assert response.json() == {"detail": "Image URL signature is invalid"}


async def test_an_expiry_with_an_underscore_or_wide_digits_is_403(client, services, stored):
    key, _ = stored
    secret = services.settings.page_url_secret.get_secret_value()
    expires = int(time.time()) + 600
    signature = sign(key, expires, secret)
    digits = str(expires)
    wide = "".join(chr(0xFF10 + int(d)) for d in digits)  # FULLWIDTH DIGIT: int() reads them

    for spelling in (f"{digits[:3]}_{digits[3:]}", wide):
        response = await client.get(
            f"{PAGE_IMAGES_PATH}/{key}", params={"expires": spelling, "sig": signature}
        )

        assert response.status_code == 403, spelling


async def test_an_expired_url_is_403_json(client, services, stored):
    key, _ = stored
    secret = services.settings.page_url_secret.get_secret_value()

    response = await client.get(url_with(key, int(time.time()) - 1, secret))

    assert response.status_code == 403
    assert response.json() == {"detail": "Image URL has expired: request it again from the chapter"}


async def test_a_url_signed_with_another_secret_is_403(client, stored):
    key, _ = stored

    response = await client.get(url_with(key, int(time.time()) + 600, "another-secret" * 3))

    assert response.status_code == 403
    assert response.json() == {"detail": "Image URL signature is invalid"}


async def test_a_signed_url_of_a_missing_image_is_404_json(client, services):
    url = await signed_url(services, page_key(str(uuid.uuid4()), 1))

    response = await client.get(url)

    assert response.status_code == 404
    assert response.json() == NOT_FOUND


async def test_an_image_deleted_with_its_chapter_is_404(client, services, stored):
    key, _ = stored
    url = await signed_url(services, key)

    await services.store.images.delete_prefix(chapter_prefix(key.split("/")[1]))
    response = await client.get(url)

    assert response.status_code == 404
    assert response.json() == NOT_FOUND


async def test_a_signed_url_of_a_key_no_image_can_have_is_404(client, services):
    secret = services.settings.page_url_secret.get_secret_value()

    response = await client.get(url_with("chapters/a/../b.webp", int(time.time()) + 60, secret))

    assert response.status_code in (403, 404)  # the client may normalise the dots away
    assert "detail" in response.json()


@asynccontextmanager
async def page_store_swapped(services, store):
    original = services.store
    services.store = Store.of(original.client, services.settings, images=store)
    try:
        yield
    finally:
        services.store = original


async def test_storage_down_is_503_json_with_retry_after(client, services, stored, tmp_path):
    key, _ = stored
    url = await signed_url(services, key)
    dead = unreachable_mongo(tmp_path)
    try:
        async with page_store_swapped(services, GridFSPageStore(dead["pcj_test"])):
            response = await client.get(url)
    finally:
        await dead.close()

    assert response.status_code == 503
    assert response.json() == {
        "detail": "Service temporarily unavailable: page image storage is unreachable, retry later"
    }
    assert "retry-after" in response.headers


async def test_with_s3_urls_are_the_stores_own_and_open_in_a_browser(services, seaweedfs):
    store = create_page_store(s3_settings(seaweedfs), services.store.collections.db)
    s3_services = dataclasses.replace(
        services, store=Store.of(services.store.client, services.settings, images=store)
    )
    key = page_key(str(uuid.uuid4()), 1)
    data = os.urandom(2000)
    await store.put(key, data, "image/webp")
    try:
        url = await page_image_url(s3_services, key, origin=ORIGIN)
        async with httpx.AsyncClient() as browser:
            response = await browser.get(url)
    finally:
        await store.delete_prefix("chapters/")

    assert urlsplit(url).netloc == urlsplit(seaweedfs.endpoint).netloc
    assert response.status_code == 200
    assert response.content == data


async def test_with_s3_the_api_route_serves_nothing(client, services, seaweedfs):
    key = page_key(str(uuid.uuid4()), 1)
    secret = services.settings.page_url_secret.get_secret_value()
    store = create_page_store(s3_settings(seaweedfs), services.store.collections.db)

    async with page_store_swapped(services, store):
        response = await client.get(url_with(key, int(time.time()) + 60, secret))

    assert response.status_code == 404
    assert response.json() == NOT_FOUND


async def test_api_public_url_is_the_origin_of_signed_urls(services, stored):
    key, _ = stored
    settings = services.settings.model_copy(update={"api_public_url": "https://api.example.com"})
    origin = api_origin(settings, "http://10.0.0.7:8000/")

    url = await page_image_url(dataclasses.replace(services, settings=settings), key, origin=origin)

    assert url.startswith(f"https://api.example.com{PAGE_IMAGES_PATH}/{key}?expires=")


def test_without_api_public_url_the_origin_is_the_requests():
    assert api_origin(Settings(), "http://testserver/") == "http://testserver"


METRICS = "m" * 16  # production's other required secrets
STREAM = "s" * 64


def test_production_refuses_to_start_without_a_page_url_secret():
    with pytest.raises(pydantic.ValidationError, match="PAGE_URL_SECRET"):
        Settings(
            app_env="production",
            firebase_project_id="real-project",
            metrics_token=METRICS,
            stream_token_secret=STREAM,
        )


@pytest.mark.parametrize("secret", ["development-only-page-url-secret", "short"])
def test_production_refuses_the_development_or_a_short_secret(secret):
    with pytest.raises(pydantic.ValidationError, match="PAGE_URL_SECRET"):
        Settings(
            app_env="production",
            firebase_project_id="real-project",
            page_url_secret=secret,
            metrics_token=METRICS,
            stream_token_secret=STREAM,
        )


def test_production_starts_with_a_real_secret():
    settings = Settings(
        app_env="production",
        firebase_project_id="real-project",
        page_url_secret="k" * 32,
        metrics_token=METRICS,
        stream_token_secret=STREAM,
    )

    assert settings.page_url_secret.get_secret_value() == "k" * 32
    assert "k" * 32 not in repr(settings)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"page_store": "s3"}, "S3_BUCKET"),
        ({"page_store": "s3", "s3_bucket": "b", "s3_access_key_id": "k"}, "go together"),
        ({"s3_endpoint_url": "localhost:9000"}, "http"),
        ({"page_public_base_url": "cdn.example.com"}, "http"),
        ({"page_url_ttl_s": 10}, "page_url_ttl_s"),
        ({"page_url_ttl_s": 8 * 86_400}, "page_url_ttl_s"),
    ],
)
def test_page_image_settings_are_checked_at_startup(fields, message):
    with pytest.raises(pydantic.ValidationError, match=message):
        Settings(**fields)
