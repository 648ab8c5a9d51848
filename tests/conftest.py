"""Session fixtures: a real mongod (replica set) and redis-server from wheels, on free ports.

HTTP goes through ``httpx.ASGITransport`` with the app's lifespan run in the test event loop
(one loop for the session; PyMongo's async client is bound to its loop). Every test starts with
empty collections.
"""

from __future__ import annotations

import gc
import os
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import firebase_admin._token_gen
import httpx
import pymongo
import pytest
from asgi_lifespan import LifespanManager
from litestar import Litestar

from devstack.embedded import Server, free_port, remove_tree, start_mongod, start_redis
from indexes.spec import specification
from indexes.sync import sync
from service.api.app import create_app
from service.domain.job import utcnow
from service.settings import Settings
from service.store.collections import Collections
from service.store.database import Store
from service.store.documents import PdfChapterJob
from tests.support.auth_emulator import (
    MIN_NODE,
    AuthEmulator,
    find_cli,
    node_too_old,
    node_version,
    required_in_ci,
)
from tests.support.firebase_certs import CertServer

PROJECT_ID = "pcj-test-project"
# Every secret production requires, each valid: a test about one of them passes the others.
PRODUCTION_SECRETS = {
    "metrics_token": "m" * 16,
    "page_url_secret": "k" * 32,
    "stream_token_secret": "s" * 64,
}
# The session's SeaweedFS (S3) server fixture, for the page store's S3 backend.
pytest_plugins = ["tests.support.seaweed"]
os.environ.setdefault("NO_PROXY", "127.0.0.1,localhost")
os.environ.pop("FIREBASE_AUTH_EMULATOR_HOST", None)


@pytest.fixture(scope="session")
def mongod(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    dbpath = tmp_path_factory.mktemp("mongod")
    server = start_mongod(dbpath, free_port(), ttl_monitor_sleep_s=1)
    # Off unless a test asks for it (``ttl_monitor``): the seeds' examples date from February
    # 2026, older than JOB_TTL_DAYS, and a pass between a test's insert and its read would
    # delete the job under it.
    _set_ttl_monitor(server, enabled=False)
    yield server
    server.stop()
    remove_tree(dbpath)


def _set_ttl_monitor(server: Server, *, enabled: bool) -> None:
    with pymongo.MongoClient(server.url, serverSelectionTimeoutMS=10_000) as client:
        client.admin.command("setParameter", 1, ttlMonitorEnabled=enabled)


@pytest.fixture
def ttl_monitor(mongod: Server) -> Iterator[None]:
    """MongoDB's TTL monitor running (every second) for the duration of one test."""
    _set_ttl_monitor(mongod, enabled=True)
    yield
    _set_ttl_monitor(mongod, enabled=False)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    directory = tmp_path_factory.mktemp("redis")
    server = start_redis(directory, free_port(), persistent=False)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def cert_server() -> Iterator[CertServer]:
    """Google's certificate endpoint, redirected to 127.0.0.1 for the whole session."""
    server = CertServer(PROJECT_ID)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(firebase_admin._token_gen, "ID_TOKEN_CERT_URI", server.url)
        yield server
    server.close()


@pytest.fixture(scope="session")
def settings(mongod: Server, redis_server: Server, cert_server: CertServer) -> Settings:
    return Settings(
        mongodb_url=mongod.url,
        mongodb_db="pcj_test",
        redis_url=redis_server.url,
        firebase_project_id=PROJECT_ID,
        firebase_auth_emulator_host=None,
        app_env="development",
        cors_origins=["https://wordai.pro"],
        mongodb_timeout_ms=1500,
        mongodb_startup_wait_s=5,
    )


@asynccontextmanager
async def serve(app: Litestar) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client for ``app`` with its lifespan running in this event loop."""
    async with LifespanManager(app, startup_timeout=30, shutdown_timeout=30):
        # Not manager.app: it hands every request the same scope["state"] dict, where servers
        # give each request its own copy (Litestar keeps per-request data there).
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield client


@pytest.fixture
def other_app() -> Callable[[Settings], Any]:
    """Serve a second app with other settings, for the block."""

    @asynccontextmanager
    async def run(other_settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
        async with serve(create_app(other_settings)) as other_client:
            yield other_client

    return run


@pytest.fixture(scope="session")
async def app(settings: Settings) -> AsyncIterator[Litestar]:
    application = create_app(settings)
    async with serve(application) as client:
        # The indexes the product relies on (unique chunks per job, idempotency keys).
        await sync(application.state.services.store.collections.db, specification(settings))
        application.state.test_client = client
        yield application


@pytest.fixture(scope="session")
async def client(app: Litestar) -> httpx.AsyncClient:
    test_client: httpx.AsyncClient = app.state.test_client
    return test_client


@pytest.fixture(scope="session")
def store(app: Litestar) -> Store:
    """The app's store: every collection, repository and the page store."""
    services_store: Store = app.state.services.store
    return services_store


@pytest.fixture(scope="session")
def apply(store: Store) -> Any:
    """The job store's one writer of job state: ``await apply(lifecycle.advance(...))``."""
    return store.jobs.apply


@pytest.fixture(scope="session")
def collections(store: Store) -> Collections:
    """The app's collections, for tests that look at documents directly."""
    return store.collections


@pytest.fixture(autouse=True)
def _collect_garbage_after_each_test() -> Iterator[None]:
    """With ``PCJ_GC_EACH_TEST=1``, collect garbage as each test ends: an object it leaked (an
    unclosed socket, say) then warns in that test, not in whichever test the collector happens
    to run in later. Off by default (it costs a collection per test); run with it and
    ``PYTHONTRACEMALLOC=20`` to see where a leaked object was made."""
    yield
    if os.environ.get("PCJ_GC_EACH_TEST"):
        gc.collect()


@pytest.fixture(autouse=True)
async def _clean_database(request: pytest.FixtureRequest) -> AsyncIterator[None]:
    yield
    if "app" in request.fixturenames:
        db = request.getfixturevalue("app").state.services.store.collections.db
        # A synchronous test (the browser tests) blocks this session's event loop for its whole
        # run, so the client's server monitor misses its heartbeat deadline. When the loop runs
        # again it may mark the server unknown and interrupt what is in flight, this clean-up
        # included (AutoReconnect: "operation cancelled"), though mongod is fine: try again.
        for attempt in range(3):
            try:
                for name in await db.list_collection_names():
                    await db[name].delete_many({})
                break
            except pymongo.errors.AutoReconnect:
                if attempt == 2:
                    raise
        # Rate-limit counters and queued jobs start from nothing in every test too.
        await request.getfixturevalue("app").state.services.queue.flushall()


@pytest.fixture
def auth_headers(cert_server: CertServer) -> Callable[..., dict[str, str]]:
    """``auth_headers("alice")``: a valid RS256 Firebase ID token for that user."""

    def make(user_id: str, **claims: Any) -> dict[str, str]:
        return {"Authorization": f"Bearer {cert_server.token(user_id, **claims)}"}

    return make


@pytest.fixture
def job_factory(collections: Collections) -> Callable[..., Any]:
    """Insert a job document in any state, as the worker would have left it."""

    async def make(user_id: str = "alice", **fields: Any) -> PdfChapterJob:
        now = utcnow()
        fields.setdefault("created_at", now)
        fields.setdefault("updated_at", fields["created_at"])
        job = PdfChapterJob(
            user_id=user_id,
            book_id=fields.pop("book_id", "book_19127824bb26"),
            file_id=fields.pop("file_id", "file_122e249f76bf"),
            **fields,
        )
        await collections.jobs.insert_one(job.model_dump())
        return job

    return make


def iso(moment: datetime) -> datetime:
    return moment.astimezone(UTC)


REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
async def queue(app: Litestar) -> AsyncIterator[Any]:
    """The app's arq Redis client, on an empty Redis."""
    redis = app.state.services.queue
    await redis.flushall()
    yield redis
    await redis.flushall()


@pytest.fixture
def run_worker(app: Litestar, settings: Settings, queue: Any) -> Callable[..., Any]:
    """Run an arq worker (burst: until the queue is empty) in this event loop."""
    from service.store.doorbell import create_queue
    from worker.wiring import create_worker

    async def run(**overrides: Any) -> Any:
        worker_settings = settings.model_copy(update=overrides)
        worker = create_worker(
            worker_settings,
            burst=True,
            poll_delay=0,
            redis_pool=create_queue(worker_settings),  # arq closes it when done
            handle_signals=False,
            ctx={"mongo_client": app.state.services.store.client},
        )
        try:
            await worker.main()
        finally:
            await worker.close()
        return worker

    return run


@pytest.fixture
def upload(client: httpx.AsyncClient, auth_headers: Callable[..., dict[str, str]]) -> Any:
    """``await upload(pdf_bytes, user_id="alice")``: POST /api/v1/files, return the response."""

    async def send(data: bytes, user_id: str = "alice", filename: str = "document.pdf") -> Any:
        return await client.post(
            "/api/v1/files",
            files={"file": (filename, data, "application/pdf")},
            headers=auth_headers(user_id),
        )

    return send


@pytest.fixture
def submit(
    client: httpx.AsyncClient, auth_headers: Callable[..., dict[str, str]], upload: Any
) -> Any:
    """``await submit(pdf_bytes)``: upload a PDF and create a job for it; return the job JSON."""

    async def send(
        data: bytes, user_id: str = "alice", filename: str = "document.pdf", **options: Any
    ) -> Any:
        """``options``: the chapter's (``content_mode="pdf_file"`` skips rendering images,
        for tests about many pages rather than about images)."""
        uploaded = await upload(data, user_id=user_id, filename=filename)
        assert uploaded.status_code == 201, uploaded.text
        created = await client.post(
            "/api/v1/books/jobs",
            json={"book_id": "book_1", "file_id": uploaded.json()["file_id"], **options},
            headers=auth_headers(user_id),
        )
        assert created.status_code == 202, created.text
        return created.json()

    return send


@pytest.fixture(scope="session")
async def embeddings(app: Litestar) -> AsyncIterator[Any]:
    """One embedding process for the session's indexing (the API's own serves its searches)."""
    from service.retrieval.process import EmbeddingProcess

    process = EmbeddingProcess(app.state.services.model, threads=1)
    yield process
    await process.aclose()


@pytest.fixture
def index_chapters(store: Store, settings: Settings, embeddings: Any, app: Litestar) -> Any:
    """``await index_chapters()``: index every pending chapter, as a worker's indexer does;
    returns how many it indexed."""
    from worker.indexing.indexer import Indexer

    async def run(**overrides: Any) -> int:
        indexer = Indexer(
            store, settings.model_copy(update=overrides), app.state.services.model, embeddings
        )
        while await indexer.index_next():
            pass
        return indexer.indexed

    return run


@pytest.fixture(scope="session")
def auth_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthEmulator]:
    """One Firebase Auth Emulator for the session (the API's token tests and the page's sign-in
    in Chromium share it). Skipped where the firebase CLI is missing, failed under CI."""
    cli = find_cli()
    if cli is None:
        required_in_ci(
            "firebase CLI not installed: `make auth-emulator` (as .ci/run does) installs it "
            "to run these tests against the Firebase Auth Emulator"
        )
        raise AssertionError("unreachable")
    node = node_version()
    if node_too_old(node):
        required_in_ci(
            f"the firebase CLI needs Node >= {MIN_NODE} and the node it would run with is "
            f"{node or 'missing'}: `make auth-emulator` installs one into .tools/node"
        )
    emulator = AuthEmulator(cli, tmp_path_factory.mktemp("auth-emulator"))
    try:
        emulator.wait_ready()
        yield emulator
    finally:
        emulator.stop()
