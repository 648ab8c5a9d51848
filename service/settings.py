"""Settings: one class, read from the environment and validated once at startup.

Everything is passed in (``create_app(settings)``, ``ctx["settings"]``); nothing reads the
environment at import time.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

# Where `make run` starts its embedded servers, so the defaults reach them with no configuration.
EMBEDDED_MONGO_PORT = 27018
EMBEDDED_REDIS_PORT = 6380
# The shortest STREAM_TOKEN_SECRET production accepts.
MIN_STREAM_SECRET_LENGTH = 32


class AppEnv(StrEnum):
    """Where the service runs; production forbids every development shortcut."""

    development = "development"
    production = "production"


class Settings(BaseSettings):
    """The service's configuration. Every field is documented in the README's table."""

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
    # Seconds a polling client is told to wait between polls of a job that is not finished.
    poll_retry_after_s: int = Field(default=2, ge=1, le=60)
    # Polls of different jobs in flight together are read in one MongoDB query of up to this
    # many jobs (service/reads.py); 1 reads each poll with its own find_one.
    poll_read_batch: int = Field(default=100, ge=1, le=1000)
    # Verified Firebase claims kept in memory, per token, until the token's exp.
    auth_cache_size: int = Field(default=10_000, ge=0, le=1_000_000)

    # Seed 004: requests a minute per user to GET /api/v1/jobs/{job_id}/chunks, counted in Redis.
    chunks_rate_limit_per_minute: int = Field(default=100, ge=1, le=1_000_000)

    # Uploads and the PDF pipeline.
    max_upload_mb: int = Field(default=100, ge=1, le=10_240)
    # Memory (beyond the parser process's own baseline) and wall-clock caps for parsing one PDF.
    job_memory_limit_mb: int = Field(default=1024, ge=16, le=65_536)
    job_time_limit_s: float = Field(default=1800.0, gt=0, le=86_400)
    # A processing job whose heartbeat is older than this is taken to have lost its worker.
    heartbeat_interval_s: float = Field(default=5.0, gt=0, le=300)
    stale_after_s: float = Field(default=60.0, gt=0, le=3600)
    # A pending job not started after this long is enqueued again (the doorbell was lost).
    pending_grace_s: float = Field(default=30.0, ge=0, le=3600)
    # Claims per job before it fails with "worker lost".
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
    # Where `python -m worker` serves its Prometheus metrics (0: not at all).
    worker_metrics_port: int = Field(default=9101, ge=0, le=65535)

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
    def is_production(self) -> bool:
        return self.app_env is AppEnv.production

    @property
    def job_ttl_seconds(self) -> int:
        return self.job_ttl_days * 86_400

    @property
    def max_upload_bytes(self) -> int:
        return self.max_upload_mb * 1024 * 1024

    # --- Progress pushed over SSE: GET /api/v1/books/jobs/{job_id}/events (service/api/events.py)
    # A comment line this often keeps a quiet stream open through proxies. nginx closes a stream
    # silent for 60 s (nginx/nginx.conf.template), so at most 15 s: three heartbeats fit in it.
    stream_heartbeat_s: float = Field(default=15.0, gt=0, le=15)
    # Events waiting for one client that does not read them; past this it is dropped (its
    # EventSource reconnects and resumes), so a slow client costs bounded memory.
    stream_queue_limit: int = Field(default=256, ge=1, le=100_000)
    # Open event streams per user in one API process.
    stream_max_per_user: int = Field(default=10, ge=1, le=10_000)
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
            secret is None or len(secret.get_secret_value()) < MIN_STREAM_SECRET_LENGTH
        ):
            raise ValueError(
                f"STREAM_TOKEN_SECRET must be {MIN_STREAM_SECRET_LENGTH} or more random characters "
                "when APP_ENV=production: it signs the event streams' tokens"
            )
        return self
