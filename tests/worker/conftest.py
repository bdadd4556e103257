"""A runner context on SQLite + a local artifact folder, and a helper to submit jobs directly."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from infoprune_jobs import migrate
from infoprune_jobs.db import make_engine, make_sessionmaker, transaction
from infoprune_jobs.repository import TenantAdmin, TenantRepository
from infoprune_jobs.settings import Settings
from infoprune_jobs.storage import make_storage
from tests.conftest import FAST_CONFIG
from worker.runner import RunnerContext

Submit = Callable[..., str]


@pytest.fixture
def runner_ctx(service_env: Path, tiny_model_dir: Path) -> Iterator[RunnerContext]:
    settings = Settings(lease_ttl_s=3.0, webhook_allow_private=True, webhook_attempts=1)
    shutil.copytree(tiny_model_dir, settings.models_dir / "tiny-bert")
    migrate.upgrade(settings.sqlalchemy_url)
    engine = make_engine(settings.sqlalchemy_url)
    yield RunnerContext(settings, make_sessionmaker(engine), make_storage(settings))
    engine.dispose()


@pytest.fixture
def submit(runner_ctx: RunnerContext) -> Submit:
    """A job as the API records it: local sources by their name inside the model root."""

    def _submit(
        source: str = "tiny-bert", webhook_url: str | None = None, device_class: str = "cpu", **config: Any
    ) -> str:
        with transaction(runner_ctx.sessions) as s:
            tenant, _ = TenantAdmin(s).get_or_create_tenant("worker-tests")
            job = TenantRepository(s, tenant.id).add_job(
                source=source,
                source_kind="local",
                config={**FAST_CONFIG, **config},
                device_class=device_class,
                webhook_url=webhook_url,
            )
            return job.id

    return _submit
