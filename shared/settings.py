"""One settings model for every FS_* variable of the contract."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class ConfigurationError(RuntimeError):
    """A service cannot run with this configuration: it logs why and exits non-zero (shared.runtime.wiring)."""


# Metrics port = FS_METRICS_PORT_BASE + offset.
METRICS_PORT_OFFSETS = {"upload": 0, "sanitizer": 1, "resizer": 2, "delivery": 3, "retention": 4}
# `make run` itself (the embedded broker's memory and recycles) serves its metrics on base + 5.
LAUNCHER_METRICS_PORT_OFFSET = 5


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FS_", extra="ignore")

    kafka_bootstrap: str = "127.0.0.1:9092"
    # Tansu has no InitProducerId: idempotence must stay off against it.
    kafka_enable_idempotence: bool = False
    # PostgreSQL, the system of record (`make run` points it at its embedded server).
    database_url: str = ""
    # Where `make run` starts its own PostgreSQL when FS_DATABASE_URL is not set.
    embedded_database_port: int = 5433
    # Connections each service instance keeps at most.
    database_pool_size: int = 10
    # Retention of every event topic (transport, not storage).
    topic_retention_hours: float = 168
    # An unfinished file whose stage has not moved this long has its last stage event emitted again.
    redrive_seconds: float = 60
    # `make run` kills and restarts a component that has not answered its liveness probe this long.
    liveness_seconds: float = Field(default=30, gt=0)
    # `make run` restarts its embedded broker in a quiet moment once its resident memory passes this.
    embedded_broker_max_mb: float = Field(default=512, gt=0)
    # When delivery sees that the broker lost its log, it sends again the messages of this many last minutes.
    republish_minutes: float = 10
    s3_endpoint: str = "127.0.0.1:9000"
    s3_access_key: str = ""
    s3_secret_key: str = ""
    s3_secure: bool = False
    s3_bucket: str = "fileshare"
    s3_key_bucket: str = "fileshare-keys"
    master_key: str = ""
    # Former master keys (comma separated, base64) kept so blobs wrapped before a rotation still open.
    previous_master_keys: str = ""
    auth_secret: str = ""
    clamd: str | None = None
    clamav_db_dir: str = "/var/lib/clamav"
    data_dir: Path = Path(".data")
    # Address the HTTP and metrics servers listen on (0.0.0.0 in containers).
    bind_host: str = "127.0.0.1"
    upload_port: int = 8080
    delivery_port: int = 8081
    # How the web pages reach the services (origin, no trailing slash); default http://127.0.0.1:{port}.
    public_upload_url: str = ""
    public_delivery_url: str = ""
    # How upload's re-drive reaches delivery's internal routes (inside the cluster, never the public origin).
    internal_delivery_url: str = ""
    max_upload_bytes: int = 5 * 1024 * 1024
    # Upload bodies being read at one time share this many bytes; more wait in line (then 503).
    upload_buffer_bytes: int = 32 * 1024 * 1024
    max_caption_chars: int = 2000
    # Over any 60 s, across every upload instance: uploads by one sender into one conversation, and into one account.
    uploads_per_minute: int = Field(default=30, gt=0)
    account_uploads_per_minute: int = Field(default=1200, gt=0)
    file_channels: str = "web"
    retention_sweep_seconds: float = 3600
    metrics_port_base: int = 9101
    topic_partitions: int = 4
    max_image_pixels: int = 50_000_000
    max_image_frames: int = 1000
    max_jpeg_scans: int = 100
    max_document_pages: int = Field(default=500, ge=1)  # a PDF over this is file_too_complex
    decode_timeout_seconds: float = 10.0
    decode_memory_bytes: int = 1024 * 1024 * 1024
    image_workers: int = Field(default=0, description="0 = one per CPU core")
    # Photos an image stage handles at once, also of one conversation (one partition): while some
    # wait on storage or the scanner, others use the cores. Published in send order regardless.
    records_in_flight: int = Field(default=4, ge=1)
    # How long a consumer's fetch waits on the broker when it has nothing new (shared.adapters.kafka.fetch_wait_ms).
    kafka_fetch_wait_ms: int = Field(default=50, ge=1, le=5000)
    link_ttl_seconds: int = 300
    log_level: str = "INFO"

    @field_validator("clamd", mode="before")
    @classmethod
    def _empty_is_none(cls, v):
        return v or None

    @model_validator(mode="after")
    def _public_urls(self):
        self.public_upload_url = (self.public_upload_url or f"http://127.0.0.1:{self.upload_port}").rstrip("/")
        self.public_delivery_url = (self.public_delivery_url or f"http://127.0.0.1:{self.delivery_port}").rstrip("/")
        self.internal_delivery_url = (self.internal_delivery_url or f"http://127.0.0.1:{self.delivery_port}").rstrip(
            "/"
        )
        return self

    @property
    def file_channel_set(self) -> frozenset[str]:
        return frozenset(c.strip() for c in self.file_channels.split(",") if c.strip())

    def metrics_port(self, service: str) -> int:
        return self.metrics_port_base + METRICS_PORT_OFFSETS[service]


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
