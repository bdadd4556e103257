"""With the broker unreachable: /readyz says 503 and a submission is refused with 503, job marked failed."""

from __future__ import annotations

import time
from pathlib import Path

from fastapi.testclient import TestClient

from api import build_context, create_app
from infoprune_jobs import migrate
from infoprune_jobs.db import transaction
from infoprune_jobs.repository import TenantAdmin
from infoprune_jobs.settings import Settings
from tests.conftest import free_port


def test_unreachable_broker(service_env: Path) -> None:
    settings = Settings(broker_url=f"redis://127.0.0.1:{free_port()}/0")
    migrate.upgrade(settings.sqlalchemy_url)
    ctx = build_context(settings)
    with transaction(ctx.sessions) as s:
        admin = TenantAdmin(s)
        key = admin.create_key(admin.get_or_create_tenant("t")[0])
    (settings.models_dir / "m").mkdir(parents=True)
    with TestClient(create_app(ctx), raise_server_exceptions=False) as client:
        ready = client.get("/readyz")
        assert ready.status_code == 503 and ready.headers["content-type"] == "application/problem+json"
        assert ready.json()["checks"]["broker"].startswith("unavailable") and ready.json()["checks"]["database"] == "ok"
        t0 = time.monotonic()
        r = client.post(
            "/v1/jobs",
            json={"source": "m", "config": {"target_flops_ratio": 0.5}},
            headers={"Authorization": f"Bearer {key}"},
        )
        assert r.status_code == 503 and r.headers["content-type"] == "application/problem+json"
        assert time.monotonic() - t0 < 20
        # the submission is withdrawn: nothing half-made stays behind, a retry starts afresh
        assert client.get("/v1/jobs", headers={"Authorization": f"Bearer {key}"}).json()["data"] == []
