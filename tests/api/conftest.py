"""An API on a real database (SQLite and PostgreSQL), two tenants with keys, a model root with a model.

The dispatcher is the embedded queue with no worker draining it, so submitted jobs stay queued.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api import build_context, create_app
from api.context import AppContext
from infoprune_jobs import migrate
from infoprune_jobs.db import transaction
from infoprune_jobs.dispatch import LocalDispatcher
from infoprune_jobs.repository import TenantAdmin
from infoprune_jobs.settings import Settings


@dataclass
class Api:
    client: TestClient
    ctx: AppContext
    key_a: str
    key_b: str
    root: Path

    def headers(self, key: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {key or self.key_a}"}


def make_api(settings: Settings) -> Iterator[Api]:
    migrate.upgrade(settings.sqlalchemy_url)
    ctx = build_context(settings, dispatcher=LocalDispatcher())
    with transaction(ctx.sessions) as s:
        admin = TenantAdmin(s)
        keys = [admin.create_key(admin.get_or_create_tenant(name)[0]) for name in ("tenant-a", "tenant-b")]
    root = settings.models_dir
    (root / "tiny").mkdir(parents=True)
    (root / "tiny" / "config.json").write_text("{}")
    with TestClient(create_app(ctx), raise_server_exceptions=False) as client:
        yield Api(client, ctx, keys[0], keys[1], root)
    ctx.engine.dispose()


@pytest.fixture
def api_overrides() -> dict[str, Any]:
    """Settings a test module changes for its ``api`` (override this fixture there)."""
    return {}


@pytest.fixture(params=["sqlite", "postgresql"])
def api(request: pytest.FixtureRequest, service_env: Path, api_overrides: dict[str, Any]) -> Iterator[Api]:
    url = None if request.param == "sqlite" else request.getfixturevalue("pg_clean")
    settings = Settings(
        database_url=url,
        max_request_bytes=16 * 1024,
        max_upload_bytes=64 * 1024,
        max_extracted_bytes=256 * 1024,
        **api_overrides,
    )
    yield from make_api(settings)


JOB = {"source": "tiny", "config": {"target_flops_ratio": 0.5}}
