"""The Litestar application: ``create_app(settings)``; ``app_factory`` for granian."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from typing import Any

from litestar import Litestar
from litestar.config.cors import CORSConfig
from litestar.di import Provide
from litestar.middleware import DefineMiddleware
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import Components, SecurityScheme

from service import __doc__ as service_doc
from service.api.http.dependencies import provide_principal, provide_services
from service.api.http.errors import exception_handlers
from service.api.http.examples import document_examples
from service.api.http.middleware import request_id_middleware
from service.api.http.openapi import OfflineSwagger, document_request_bodies
from service.api.routes.book_jobs import BookJobController
from service.api.routes.chapters import ChapterController
from service.api.routes.chunks import ChunkController
from service.api.routes.events import JobEventController, create_feed
from service.api.routes.files import FileController
from service.api.routes.ingestion import ingestion_job_status
from service.api.routes.job_router import JobRouterController
from service.api.routes.metrics import JOB_READS, metrics, observe_request
from service.api.routes.ops import health, ready
from service.api.routes.page_images import PageImageController
from service.api.routes.search import SearchController
from service.api.routes.web_page import SWAGGER_UI, load_vendor, vendor_dir, web_page_controller
from service.api.schemas.ingestion import INGESTION_FIELDS
from service.api.schemas.job_detail import JOB_DETAIL_FIELDS
from service.api.schemas.jobs import JOB_STATUS_FIELDS
from service.api.services import JobReaders, Services
from service.auth.stream_tokens import StreamTokens
from service.auth.tokens import TokenVerifier
from service.limits.rate_limit import RateLimiter
from service.logs import configure_logging
from service.retrieval.model import load_model_spec
from service.retrieval.process import EmbeddingProcess
from service.retrieval.ranking import ScopeCache
from service.settings import Settings
from service.store.collections import Collections
from service.store.database import open_store
from service.store.doorbell import create_queue
from service.store.mongo import socket_timeout_ms
from service.store.reader import JobReader

log = logging.getLogger("service.app")

GC_GEN0_THRESHOLD = 10_000

EXPOSED_HEADERS = [
    "ETag",
    "Retry-After",
    "X-Request-ID",
    "Location",
    "RateLimit-Limit",
    "RateLimit-Remaining",
    "RateLimit-Reset",
    "RateLimit-Policy",
]
ALLOWED_HEADERS = [
    "Authorization",
    "Content-Type",
    "If-None-Match",
    "Idempotency-Key",
    "X-Request-ID",
    "Last-Event-ID",
]


CLOSE_TIMEOUT_S = 5.0
# A query is one short text: a few ms once the model is loaded. Past these, search answers 503
# rather than queue behind a stuck process.
QUERY_TIME_LIMIT_S = 10.0
QUERIES_QUEUED = 64


async def _close_within(name: str, closing: Coroutine[Any, Any, Any]) -> None:
    """Close one client, giving up after ``CLOSE_TIMEOUT_S``: a driver stuck reconnecting to a
    server that just restarted must not hold the process's shutdown (and a task that ignores
    its cancellation is left behind rather than waited for)."""
    task = asyncio.ensure_future(closing)
    done, _ = await asyncio.wait({task}, timeout=CLOSE_TIMEOUT_S)
    if not done:
        log.warning("shutdown: closing %s took over %.0f s; moving on", name, CLOSE_TIMEOUT_S)
    elif task.exception() is not None:
        log.warning("shutdown: closing %s failed: %s", name, type(task.exception()).__name__)


def _readers(settings: Settings, collections: Collections) -> JobReaders:
    def reader(fields: dict[str, int]) -> JobReader:
        return JobReader(
            lambda: collections.jobs,
            fields,
            max_batch=settings.poll_read_batch,
            timeout_s=socket_timeout_ms(settings) / 1000,
            counts=JOB_READS,
        )

    return JobReaders(
        status=reader(JOB_STATUS_FIELDS),
        detail=reader(JOB_DETAIL_FIELDS),
        ingestion=reader(INGESTION_FIELDS),
    )


def create_app(settings: Settings) -> Litestar:
    """Build the API for these settings. Clients are created in the lifespan, in its loop."""
    vendor = load_vendor(vendor_dir(settings))  # the browser packages: read once, served here

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        store = await open_store(settings)
        # The embedding model is checked now (files, sha256); its process starts with the
        # first search, so an API that nobody searches does not hold a model in memory.
        model = load_model_spec(settings.embedding_model_dir)
        embeddings = EmbeddingProcess(
            model,
            threads=settings.embedding_threads,
            memory_limit_bytes=settings.embedding_memory_limit_mb * 1024 * 1024,
            time_limit_s=QUERY_TIME_LIMIT_S,
            max_queued=QUERIES_QUEUED,
            texts_per_request=1,
        )
        verifier = TokenVerifier(settings)
        queue = create_queue(settings)
        feed = create_feed(settings, store.collections)
        await feed.start(wait_s=settings.mongodb_timeout_ms / 1000 * 2)
        app.state.services = services = Services(
            settings=settings,
            store=store,
            verifier=verifier,
            queue=queue,
            limiter=RateLimiter(queue),
            readers=_readers(settings, store.collections),
            feed=feed,
            stream_tokens=StreamTokens.from_settings(settings),
            model=model,
            embeddings=embeddings,
            vectors=ScopeCache(settings.search_cache_mb * 1024 * 1024),
        )
        # Move everything built at startup out of the collector's sight, and collect the young
        # generation less often: requests allocate many short-lived objects and few cycles.
        # Measured on the polling endpoint (bench/polling.py): p99 73 ms -> 20 ms.
        gc.collect()
        gc.freeze()
        gc.set_threshold(GC_GEN0_THRESHOLD, *gc.get_threshold()[1:])
        if verifier.emulated:
            log.warning("Firebase emulator mode: unsigned tokens accepted (development only)")
        try:
            yield
        finally:
            for name, closing in (
                ("change feed", feed.aclose()),
                ("readers", services.readers.aclose()),
                ("embedding process", embeddings.aclose()),
                ("redis", queue.aclose(close_connection_pool=True)),
                ("page store and mongodb", store.aclose()),
            ):
                await _close_within(name, closing)
            verifier.close()

    app = Litestar(
        route_handlers=[
            BookJobController,
            PageImageController,
            JobEventController,
            FileController,
            ChapterController,
            JobRouterController,
            ChunkController,
            SearchController,
            ingestion_job_status,
            health,
            ready,
            metrics,
            web_page_controller(settings, vendor),  # the browser page at /, not in the schema
        ],
        lifespan=[lifespan],
        dependencies={
            "services": Provide(provide_services, sync_to_thread=False),
            "principal": Provide(provide_principal),
        },
        middleware=[
            DefineMiddleware(
                request_id_middleware, observe=observe_request if settings.http_metrics else None
            )
        ],
        exception_handlers=exception_handlers(),
        cors_config=CORSConfig(
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST", "DELETE", "OPTIONS"],
            allow_headers=ALLOWED_HEADERS,
            expose_headers=EXPOSED_HEADERS,
            allow_credentials=True,
            max_age=600,
        ),
        openapi_config=OpenAPIConfig(
            title="pdf-chapter-jobs",
            version="0.1.0",
            description=service_doc,
            path="/schema",
            render_plugins=[OfflineSwagger(available=all(name in vendor for name in SWAGGER_UI))],
            components=Components(
                security_schemes={
                    "BearerToken": SecurityScheme(
                        type="http",
                        scheme="bearer",
                        bearer_format="JWT",
                        description="A Firebase ID token",
                    )
                }
            ),
        ),
        debug=False,
        # Logging is ours (service/logs.py, set up by the entry points): Litestar's default
        # config would replace the JSON handler with its own text format.
        logging_config=None,
    )
    document_request_bodies(app)
    document_examples(app.openapi_schema)
    return app


def app_factory() -> Litestar:
    """Entry point for granian (``--factory``): settings from the environment, JSON logs."""
    settings = Settings()
    configure_logging(settings.log_level)
    if not settings.access_log:
        logging.getLogger("service.access").setLevel(logging.WARNING)
    return create_app(settings)
