"""The one settings class of the service (api, worker, CLI); env prefix ``INFOPRUNE_``.

Every knob has a default that works in embedded mode: SQLite file, local artifact folder,
in-process worker. Point ``database_url``, ``broker_url`` and ``storage_backend`` elsewhere to scale out.
"""

from __future__ import annotations

import secrets
from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def _default_data_dir() -> Path:
    return Path.home() / ".local" / "share" / "infoprune"


class Settings(BaseSettings):
    """Service configuration. Read from ``INFOPRUNE_*`` environment variables (and ``.env``)."""

    model_config = SettingsConfigDict(env_prefix="INFOPRUNE_", env_file=".env", extra="ignore")

    data_dir: Path = Field(default_factory=_default_data_dir)
    """Home of the embedded SQLite file, local artifacts, the generated secret and model root."""
    database_url: str | None = None
    """SQLAlchemy URL; default ``sqlite:///<data_dir>/infoprune.db``. PostgreSQL: ``postgresql+psycopg://...``."""
    broker_url: str | None = None
    """Celery broker (``redis://host:6379/0``). Unset: jobs run in an in-process worker thread."""
    secret_key: SecretStr | None = None
    """Signs local download URLs. Unset: generated once and kept in ``<data_dir>/secret_key``."""

    storage_backend: Literal["local", "s3"] = "local"
    storage_dir: Path | None = None
    """Local artifact folder; default ``<data_dir>/artifacts``."""
    s3_bucket: str = "infoprune"
    s3_prefix: str = ""
    s3_endpoint_url: str | None = None
    s3_public_endpoint_url: str | None = None
    """Endpoint that presigned download URLs name, when clients reach S3 elsewhere than the service."""
    s3_region: str = "us-east-1"
    s3_access_key_id: str | None = None
    s3_secret_access_key: SecretStr | None = None
    s3_create_bucket: bool = True
    storage_attempts: int = Field(default=5, ge=1, le=20)
    """Tries of each artifact-store operation before it fails (S3 down, 5xx, throttling)."""
    storage_backoff_s: float = Field(default=1.0, ge=0)
    """Wait before the first retry of a store operation; doubled after each failed try."""
    storage_backoff_max_s: float = Field(default=30.0, ge=0)
    """Longest wait between two tries of a store operation."""

    model_root: Path | None = None
    """Local model sources must lie inside this folder; default ``<data_dir>/models``."""
    source_s3_buckets: list[str] = Field(default_factory=list)
    """Buckets that ``s3://`` model sources may name (empty: ``s3://`` sources are refused)."""
    allow_hub_sources: bool = True

    public_url: str | None = None
    """Base URL of the API as clients see it (signed local download links); default: the request's."""
    download_url_ttl_s: int = Field(default=900, ge=10, le=7 * 24 * 3600)
    max_request_bytes: int = Field(default=64 * 1024, ge=1024)
    max_upload_bytes: int = Field(default=2 * 1024**3, ge=1024)
    max_extracted_bytes: int = Field(default=8 * 1024**3, ge=1024)
    max_archive_members: int = Field(default=10_000, ge=1)

    device_classes: list[str] = Field(default_factory=lambda: ["cpu"])
    """Classes jobs may ask for, one queue each; others are refused at submission. Add ``gpu`` (API and
    workers alike) where workers with CUDA devices run ``infoprune worker --device-class gpu``."""
    default_device_class: str = "cpu"
    queue_prefix: str = "infoprune."
    job_time_limit_s: int = Field(default=6 * 3600, ge=10)
    lease_ttl_s: float = Field(default=60.0, gt=0)
    """A running job's DB lease; renewed every third of it. A dead worker's job is requeued after it."""
    reaper_interval_s: float = Field(default=15.0, gt=0)
    max_attempts: int = Field(default=3, ge=1, le=100)
    """A job whose worker is lost this many times fails instead of being requeued again."""
    queued_redispatch_after_s: float = Field(default=300.0, gt=0)
    """A job queued this long, with fewer messages in its broker queue than queued jobs, is sent again."""
    db_retry_s: float = Field(default=60.0, ge=0)
    """How long a worker keeps trying to record a job's outcome while the database is unreachable."""
    worker_max_tasks_per_child: int = Field(default=10, ge=1)
    torch_threads: int = Field(default=1, ge=1)
    cache_dir: Path | None = None
    work_dir: Path | None = None
    """Work folders of running jobs; default ``<data_dir>/work``. Leftovers of killed attempts are removed."""
    worker_metrics_port: int | None = Field(default=None, ge=1, le=65535)
    """A Celery worker serves its job metrics (Prometheus) on this port, all interfaces; unset: none."""

    webhook_timeout_s: float = Field(default=10.0, gt=0)
    webhook_attempts: int = Field(default=3, ge=1, le=10)
    webhook_allow_private: bool = False
    """Allow webhook URLs that resolve to loopback/private addresses (tests, closed networks)."""
    sse_poll_interval_s: float = Field(default=1.0, gt=0)

    rate_limit_per_s: float = Field(default=20.0, ge=0)
    """Sustained requests per second per tenant (token bucket; 0 disables). Shared through Redis when a
    broker is configured, so it holds across API processes; in-memory in embedded mode."""
    rate_limit_burst: int = Field(default=100, ge=1)
    """Bucket size: requests a tenant may send at once before being limited."""
    rate_limit_redis_url: str | None = None
    """Redis for the shared buckets; default the broker URL when it is ``redis://``."""
    max_active_jobs_per_tenant: int = Field(default=50, ge=0)
    """Queued + running (+ cancelling) jobs a tenant may have at once (0: unlimited); over it: 429."""
    max_model_parameters: int = Field(default=20_000_000_000, ge=1)
    """Models whose config implies more parameters are refused before anything is allocated."""
    key_rotation_max_grace_s: int = Field(default=7 * 24 * 3600, ge=0)
    """Longest time an old API key stays valid after ``POST /v1/keys/rotate``."""

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    log_level: str = "INFO"

    @field_validator("device_classes")
    @classmethod
    def _classes_are_names(cls, value: list[str]) -> list[str]:
        for name in value:
            if not name.replace("-", "").replace("_", "").isalnum():
                raise ValueError(f"device class {name!r} must be alphanumeric (with - or _)")
        return value

    @field_validator("secret_key")
    @classmethod
    def _strong_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 16:
            raise ValueError("INFOPRUNE_SECRET_KEY must be at least 16 characters (or unset to generate one)")
        return value

    @model_validator(mode="after")
    def _default_class_is_known(self) -> Settings:
        if self.default_device_class not in self.device_classes:
            raise ValueError(f"default_device_class {self.default_device_class!r} not in {self.device_classes}")
        return self

    @property
    def embedded(self) -> bool:
        """True when jobs run in-process (no broker configured)."""
        return self.broker_url is None

    @property
    def sqlalchemy_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'infoprune.db'}"

    @property
    def artifact_dir(self) -> Path:
        return self.storage_dir or self.data_dir / "artifacts"

    @property
    def models_dir(self) -> Path:
        return self.model_root or self.data_dir / "models"

    @property
    def work_root(self) -> Path:
        return self.work_dir or self.data_dir / "work"

    def queue_for(self, device_class: str) -> str:
        return f"{self.queue_prefix}{device_class}"

    @cached_property
    def signing_key(self) -> bytes:
        """Key for signed local URLs; generated and persisted (mode 0600) when not configured."""
        if self.secret_key is not None:
            return self.secret_key.get_secret_value().encode()
        path = self.data_dir / "secret_key"
        if not path.exists():
            self.data_dir.mkdir(parents=True, exist_ok=True)
            path.touch(mode=0o600)
            path.write_text(secrets.token_urlsafe(32))
        return path.read_text().strip().encode()
