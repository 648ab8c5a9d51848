"""The test bed of the benchmarks: the servers a benchmark runs against, and how to reach them.

``servers`` starts a fresh mongod (a one-member replica set) and, unless told not to, a
redis-server in a new temporary directory, and stops both and removes the directory however the
benchmark ends. ``bench_env`` describes that bed to a process the benchmark starts (a worker,
the API, ``python -m indexes sync``) and ``bench_settings`` to this process, with the same
database and Firebase project; ``connected`` opens this process's clients on it.

    with servers("pcj-bench-") as bed:
        worker = subprocess.Popen([sys.executable, "-m", "worker"], env=bench_env(bed))
        async with connected(bed) as (settings, mongo, queue):
            ...
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import tempfile
import threading
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from arq.connections import ArqRedis

from devstack.embedded import Server, free_port, remove_tree, start_mongod, start_redis
from indexes.spec import specification
from indexes.sync import sync
from service.domain.chapter import ChapterOptions
from service.settings import Settings
from service.store.database import Store, open_store
from service.store.documents import PdfChapterJob
from service.store.doorbell import create_queue, ring

DB = "pcj_bench"
PROJECT = "demo-bench"
# Tokens are minted by the benchmarks (devstack.token); the emulator host only makes the service
# accept them without Google's keys, so nothing needs to listen there.
AUTH_EMULATOR_HOST = "127.0.0.1:9099"


@dataclass(frozen=True)
class Servers:
    """A running bed: its temporary directory (also the place for a benchmark's own files)."""

    tmp: Path
    mongod: Server
    redis: Server | None  # None when started with ``redis=False``


class Clients(NamedTuple):
    """This process's settings and clients on a bed, from ``connected``."""

    settings: Settings
    store: Store
    queue: ArqRedis


@contextlib.contextmanager
def servers(prefix: str = "pcj-bench-", *, redis: bool = True) -> Iterator[Servers]:
    """A fresh mongod (and redis-server) in a new temporary directory named ``prefix...``.

    On exit, however the block ends (an error, Ctrl-C, SIGTERM), both are stopped and the
    directory is removed.
    """
    tmp = Path(tempfile.mkdtemp(prefix=prefix))
    with _sigterm_interrupts(), contextlib.ExitStack() as cleanup:
        # Callbacks run last in, first out: the servers stop before their directory goes.
        cleanup.callback(remove_tree, tmp)
        mongod = start_mongod(tmp / "db", free_port())
        cleanup.callback(mongod.stop)
        redis_server = None
        if redis:
            redis_server = start_redis(tmp / "redis", free_port(), persistent=False)
            cleanup.callback(redis_server.stop)
        yield Servers(tmp, mongod, redis_server)


@contextlib.contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """Make SIGTERM raise KeyboardInterrupt while the block runs.

    By default SIGTERM (``timeout``, ``kill``) ends Python without running ``finally``: the
    servers would still die with us (devstack.embedded), but a mongod data directory of ~300 MB
    would stay behind. A handler someone installed already, or a thread that may not install
    one, is left alone.
    """
    if (
        threading.current_thread() is not threading.main_thread()
        or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL
    ):
        yield
        return
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _redis(bed: Servers) -> Server:
    if bed.redis is None:
        raise ValueError("this bed has no redis-server: start it with servers(redis=True)")
    return bed.redis


def bench_env(bed: Servers, **extra: str) -> dict[str, str]:
    """The environment of a process run on ``bed``: this process's, with the bed's URLs and what
    ``bench_settings`` sets; ``extra`` adds variables or overrides these."""
    return {
        **os.environ,
        "MONGODB_URL": bed.mongod.url,
        "MONGODB_DB": DB,
        "REDIS_URL": _redis(bed).url,
        "FIREBASE_PROJECT_ID": PROJECT,
        "FIREBASE_AUTH_EMULATOR_HOST": AUTH_EMULATOR_HOST,
        # Any free port: a benchmark may run several workers, and other work on this machine may
        # hold the default one. The API does not read it.
        "WORKER_METRICS_PORT": "0",
        # One user ("bench") submits every job: the benchmarks measure throughput, not turns.
        "MAX_RUNNING_JOBS_PER_USER": "1000",
        **extra,
    }


def bench_settings(bed: Servers) -> Settings:
    """This process's settings on ``bed``: the database and project ``bench_env`` gives others."""
    return Settings(
        mongodb_url=bed.mongod.url,
        mongodb_db=DB,
        redis_url=_redis(bed).url,
        firebase_project_id=PROJECT,
        firebase_auth_emulator_host=AUTH_EMULATOR_HOST,
        max_running_jobs_per_user=1000,  # as bench_env: one user submits every job
    )


@contextlib.asynccontextmanager
async def database(settings: Settings) -> AsyncIterator[Store]:
    """The store on ``settings``' MongoDB with the service's indexes in place (what the worker and
    the API expect to find); closed on exit."""
    store = await open_store(settings)
    try:
        await sync(store.collections.db, specification(settings))
        yield store
    finally:
        await store.aclose()


@contextlib.asynccontextmanager
async def connected(bed: Servers) -> AsyncIterator[Clients]:
    """``bench_settings(bed)``, MongoDB (``database``) and the arq queue; closed on exit."""
    settings = bench_settings(bed)
    async with database(settings) as store:
        queue = create_queue(settings)
        try:
            yield Clients(settings, store, queue)
        finally:
            await queue.aclose(close_connection_pool=True)


def wait_http(port: int, timeout: float = 30.0) -> None:
    """Return once the API on 127.0.0.1:``port`` answers ``/health``; RuntimeError after
    ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"the API on port {port} did not answer /health within {timeout:.0f} s")


async def upload(store: Store, data: bytes, name: str, user_id: str = "bench") -> str:
    """Store ``data`` as an uploaded PDF of ``user_id``; its file id."""

    async def chunks() -> AsyncIterator[bytes]:
        for offset in range(0, len(data), 256 * 1024):
            yield data[offset : offset + 256 * 1024]

    stored = await store.files.store_pdf(
        user_id=user_id, filename=name, content_type="application/pdf",
        chunks=chunks(), max_bytes=1 << 31,
    )  # fmt: skip
    return stored.file_id


async def enqueue(
    store: Store, queue: ArqRedis, file_id: str, options: ChapterOptions | None = None
) -> str:
    """A pending job of an uploaded file, its doorbell rung (what the API's create does, without
    HTTP and the caller's limits); its id."""
    job = PdfChapterJob(
        user_id="bench",
        book_id="b",
        file_id=file_id,
        **dataclasses.asdict(options or ChapterOptions()),
    )
    await store.jobs.insert(job.model_dump())
    await ring(queue, job.job_id)
    return job.job_id


async def submit(
    store: Store, queue: ArqRedis, data: bytes, name: str, options: ChapterOptions | None = None
) -> str:
    """Upload ``data`` and create its job (``options``: every page rendered to images)."""
    return await enqueue(store, queue, await upload(store, data, name), options)
