"""The page store, run on both backends: GridFS on a real mongod, S3 on a real SeaweedFS."""

from __future__ import annotations

import asyncio
import hashlib
import os
import uuid

import pytest

from devstack.embedded import free_port
from service.domain.errors import PageStoreError, PageStoreUnavailable
from service.domain.page_keys import (
    InvalidKey,
    chapter_prefix,
    page_key,
    source_key,
    thumbnail_key,
)
from service.store.page_images import create_page_store
from service.store.page_images.gridfs_store import BUCKET, CHUNK_SIZE, GridFSPageStore
from tests.store.conftest import s3_settings, unreachable_mongo

# Bigger than one GridFS chunk, so that replacing an image replaces several chunks.
LARGE = 2 * CHUNK_SIZE + 1234


def chapter() -> str:
    return str(uuid.uuid4())


def image(size: int = 150_000) -> bytes:
    return os.urandom(size)


async def test_put_then_open_returns_the_bytes_type_length_and_a_strong_etag(page_store):
    key = page_key(chapter(), 1)
    data = image(LARGE)

    await page_store.put(key, data, "image/webp")
    opened = await page_store.open(key)

    assert opened is not None
    assert await opened.read() == data
    assert opened.length == len(data)
    assert opened.content_type == "image/webp"
    assert opened.etag[0] == opened.etag[-1] == '"'
    assert not opened.etag.startswith("W/")


async def test_a_second_put_of_a_key_replaces_it_and_leaves_one_image(page_store):
    chapter_id = chapter()
    key = page_key(chapter_id, 1)
    first, second = image(LARGE), image(1000)
    await page_store.put(key, first, "image/webp")
    first_etag = (await page_store.open(key)).etag

    await page_store.put(key, second, "image/webp")

    opened = await page_store.open(key)
    assert await opened.read() == second
    assert opened.length == len(second)
    assert opened.etag != first_etag
    assert await page_store.count(chapter_prefix(chapter_id)) == 1


async def test_a_put_repeated_with_the_same_bytes_keeps_its_etag(page_store):
    key = page_key(chapter(), 3)
    data = image()
    await page_store.put(key, data, "image/webp")
    etag = (await page_store.open(key)).etag

    await page_store.put(key, data, "image/webp")

    assert (await page_store.open(key)).etag == etag


async def test_concurrent_puts_of_one_key_leave_one_whole_image(page_store):
    chapter_id = chapter()
    key = page_key(chapter_id, 7)
    attempts = [image(LARGE + n * 1000) for n in range(4)]

    await asyncio.gather(*(page_store.put(key, data, "image/webp") for data in attempts))

    opened = await page_store.open(key)
    stored = await opened.read()
    assert stored in attempts
    assert opened.length == len(stored)
    assert await page_store.count(chapter_prefix(chapter_id)) == 1
    if page_store.backend == "gridfs":  # the ETag is the stored bytes' digest, not a neighbour's
        assert opened.etag == f'"{hashlib.sha256(stored).hexdigest()}"'


async def test_open_of_a_missing_key_is_none(page_store):
    assert await page_store.open(page_key(chapter(), 1)) is None


async def test_jpeg_keys_keep_their_content_type(page_store):
    key = page_key(chapter(), 1, "jpeg")
    await page_store.put(key, image(), "image/jpeg")

    opened = await page_store.open(key)

    assert key.endswith("/page-1.jpg")
    assert opened.content_type == "image/jpeg"


async def test_delete_prefix_removes_a_chapter_and_nothing_else(page_store):
    doomed, kept = "abc", "abcdef"  # one id a prefix of the other: whole segments only
    for page in (1, 2, 3):
        await page_store.put(page_key(doomed, page), image(LARGE), "image/webp")
        await page_store.put(thumbnail_key(doomed, page), image(5000), "image/webp")
    await page_store.put(page_key(kept, 1), image(), "image/webp")

    deleted = await page_store.delete_prefix(chapter_prefix(doomed))

    assert deleted == 6
    assert await page_store.count(chapter_prefix(doomed)) == 0
    assert await page_store.count(chapter_prefix(kept)) == 1
    assert await page_store.open(page_key(doomed, 1)) is None
    assert await page_store.delete_prefix(chapter_prefix(doomed)) == 0


@pytest.mark.parametrize("bad", ["../etc/passwd", "/chapters/a/page-1.webp", "a//b", "", "a b"])
async def test_a_put_to_an_invalid_key_is_refused_and_stores_nothing(page_store, bad):
    with pytest.raises(InvalidKey):
        await page_store.put(bad, image(), "image/webp")

    assert await page_store.count("chapters/") == 0


@pytest.mark.parametrize("bad", ["", "chapters", "chapters/ab", "/", "../"])
async def test_delete_prefix_refuses_what_is_not_whole_segments(page_store, bad):
    key = page_key("ab", 1)
    await page_store.put(key, image(), "image/webp")

    with pytest.raises(InvalidKey):
        await page_store.delete_prefix(bad)

    assert await page_store.open(key) is not None


async def test_an_empty_image_is_refused_and_the_old_one_kept(page_store):
    key = page_key(chapter(), 1)
    data = image()
    await page_store.put(key, data, "image/webp")

    with pytest.raises(ValueError, match="at least one byte"):
        await page_store.put(key, b"", "image/webp")

    assert await (await page_store.open(key)).read() == data


async def test_an_unreachable_store_raises_unavailable(page_store, app, request, tmp_path):
    if page_store.backend == "gridfs":
        client = unreachable_mongo(tmp_path)
        store = GridFSPageStore(client["pcj_test"])
    else:
        client = None
        seaweedfs = request.getfixturevalue("seaweedfs")
        dead_port = free_port()  # nothing listens there
        settings = s3_settings(seaweedfs, s3_endpoint_url=f"http://127.0.0.1:{dead_port}")
        store = create_page_store(settings, app.state.services.store.collections.db)

    try:
        with pytest.raises(PageStoreUnavailable):
            await store.put(page_key(chapter(), 1), image(), "image/webp")
        with pytest.raises(PageStoreUnavailable):
            await store.open(page_key(chapter(), 1))
        with pytest.raises(PageStoreUnavailable):
            await store.count("chapters/")
    finally:
        if client is not None:
            await client.close()


async def test_gridfs_counts_and_deletes_chunks_left_without_their_file(app):
    db = app.state.services.store.collections.db
    store = GridFSPageStore(db)
    chapter_id = chapter()
    await store.put(page_key(chapter_id, 1), image(LARGE), "image/webp")
    # What a writer that died between its two deletes would leave: chunks, no file.
    await db[f"{BUCKET}.files"].delete_many({})

    assert await store.count(chapter_prefix(chapter_id)) == 1

    await store.delete_prefix(chapter_prefix(chapter_id))

    assert await store.count(chapter_prefix(chapter_id)) == 0
    assert await db[f"{BUCKET}.chunks"].count_documents({}) == 0


async def test_gridfs_keeps_one_files_document_and_exact_chunks_per_key(app):
    db = app.state.services.store.collections.db
    store = GridFSPageStore(db)
    key = page_key(chapter(), 1)

    await asyncio.gather(
        store.put(key, image(LARGE), "image/webp"), store.put(key, image(10), "image/webp")
    )
    await store.put(key, image(LARGE), "image/webp")

    file_doc = await db[f"{BUCKET}.files"].find_one({"_id": key})
    chunks = await db[f"{BUCKET}.chunks"].find({"files_id": key}).sort("n").to_list()
    assert await db[f"{BUCKET}.files"].count_documents({}) == 1
    assert [chunk["n"] for chunk in chunks] == [0, 1, 2]
    assert sum(len(chunk["data"]) for chunk in chunks) == file_doc["length"] == LARGE


async def test_gridfs_images_are_plain_gridfs_files(app):
    db = app.state.services.store.collections.db
    key = page_key(chapter(), 2)
    data = image(LARGE)
    await GridFSPageStore(db).put(key, data, "image/webp")

    from gridfs.asynchronous.grid_file import AsyncGridFSBucket

    stream = await AsyncGridFSBucket(db, bucket_name=BUCKET).open_download_stream(key)

    assert await stream.read() == data
    assert stream.metadata["sha256"] == hashlib.sha256(data).hexdigest()


async def test_gridfs_has_no_url_of_its_own(app):
    assert (
        await GridFSPageStore(app.state.services.store.collections.db).url(page_key("a", 1), 60)
        is None
    )


async def test_s3_with_wrong_credentials_is_an_error_not_unavailability(app, seaweedfs):
    settings = s3_settings(seaweedfs, s3_secret_access_key="not-the-secret")
    store = create_page_store(settings, app.state.services.store.collections.db)

    with pytest.raises(PageStoreError) as raised:
        await store.put(page_key(chapter(), 1), image(), "image/webp")

    assert not isinstance(raised.value, PageStoreUnavailable)


async def test_a_large_object_is_streamed_from_its_file_and_a_second_put_replaces_it(
    page_store, tmp_path
):
    chapter_id = chapter()
    key = source_key(chapter_id)
    first, second = tmp_path / "first.pdf", tmp_path / "second.pdf"
    first.write_bytes(image(7 * 1024 * 1024 + 3))  # two S3 parts, 29 GridFS chunks
    second.write_bytes(image(LARGE))

    await page_store.put_file(key, first, "application/pdf", "alice")
    opened_first = await page_store.open(key)
    first_bytes = await opened_first.read()
    await page_store.put_file(key, second, "application/pdf", "alice")
    opened = await page_store.open(key)

    assert first_bytes == first.read_bytes()
    assert opened_first.content_type == "application/pdf"
    assert await opened.read() == second.read_bytes()
    assert opened.length == second.stat().st_size
    assert await page_store.count(chapter_prefix(chapter_id)) == 1  # the older one is gone
    assert await page_store.delete_prefix(chapter_prefix(chapter_id)) == 1
    assert await page_store.count(chapter_prefix(chapter_id)) == 0


async def test_keys_name_whole_images_and_large_objects_by_their_keys(page_store, tmp_path):
    # A resumed run keeps a page only when every key it names is listed (worker/run/
    # checkpoint.py); GridFS stores a large object under an _id of its own, found by filename.
    chapter_id = chapter()
    big = tmp_path / "big.pdf"
    big.write_bytes(image(LARGE))
    await page_store.put(page_key(chapter_id, 1), image(), "image/webp")
    await page_store.put_file(source_key(chapter_id), big, "application/pdf", "alice")
    await page_store.put_file(source_key(chapter_id), big, "application/pdf", "alice")
    await page_store.put(page_key(chapter(), 1), image(), "image/webp")  # another chapter's

    keys = await page_store.keys(chapter_prefix(chapter_id))

    assert keys == {page_key(chapter_id, 1), source_key(chapter_id)}


async def test_a_large_object_in_gridfs_is_written_chunk_by_chunk_outside_a_transaction(
    app, tmp_path
):
    db = app.state.services.store.collections.db
    store = GridFSPageStore(db)
    big = tmp_path / "big.pdf"
    big.write_bytes(image(3 * CHUNK_SIZE + 5))
    key = source_key(chapter())

    await store.put_file(key, big, "application/pdf", "alice")

    files = await db[f"{BUCKET}.files"].find({"filename": key}).to_list()
    assert len(files) == 1
    assert files[0]["metadata"]["user_id"] == "alice"
    assert files[0]["length"] == big.stat().st_size
    chunks = await db[f"{BUCKET}.chunks"].count_documents({"files_id": files[0]["_id"]})
    assert chunks == 4
