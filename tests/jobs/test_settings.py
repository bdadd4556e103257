"""One settings class, env prefix INFOPRUNE_, defaults that run embedded."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from pydantic import ValidationError

from infoprune_jobs.settings import Settings


def test_defaults_are_embedded(service_env: Path) -> None:
    s = Settings()
    assert s.embedded and s.storage_backend == "local"
    assert s.sqlalchemy_url == f"sqlite:///{service_env / 'infoprune.db'}"
    assert s.artifact_dir == service_env / "artifacts" and s.models_dir == service_env / "models"
    key = s.signing_key
    assert len(key) >= 32 and Settings().signing_key == key  # generated once, then reused
    assert stat.S_IMODE((service_env / "secret_key").stat().st_mode) == 0o600


def test_environment_switches_backends(service_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INFOPRUNE_BROKER_URL", "redis://r:6379/0")
    monkeypatch.setenv("INFOPRUNE_DATABASE_URL", "postgresql+psycopg://u@db/x")
    monkeypatch.setenv("INFOPRUNE_STORAGE_BACKEND", "s3")
    monkeypatch.setenv("INFOPRUNE_DEVICE_CLASSES", '["gpu-a100", "cpu"]')
    monkeypatch.setenv("INFOPRUNE_S3_SECRET_ACCESS_KEY", "hunter2-hunter2")
    s = Settings()
    assert not s.embedded and s.sqlalchemy_url.startswith("postgresql")
    assert s.queue_for("gpu-a100") == "infoprune.gpu-a100"
    assert "hunter2" not in repr(s)


@pytest.mark.parametrize(
    "bad",
    [
        {"secret_key": "short"},
        {"default_device_class": "tpu"},
        {"device_classes": ["a b"]},
        {"storage_backend": "ftp"},
        {"lease_ttl_s": 0},
    ],
)
def test_invalid_settings_are_refused(service_env: Path, bad: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        Settings(**bad)  # type: ignore[arg-type]
