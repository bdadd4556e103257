"""No secret reaches a log: API keys (good, bad, rotated), the tenant's webhook secret, the S3 secret key and
presigned-URL signatures. Checked in the records of an in-process app (caplog, DEBUG) and in the process log
of a served instance (``infoprune serve`` at DEBUG, with Redis and S3)."""

from __future__ import annotations

import logging
import secrets
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from fastapi.testclient import TestClient

from api import build_context, create_app
from infoprune_jobs import migrate
from infoprune_jobs.db import make_engine, make_sessionmaker, transaction
from infoprune_jobs.models import Artifact, Job, Tenant, utcnow
from infoprune_jobs.repository import TenantAdmin
from infoprune_jobs.settings import Settings
from tests.archives import tgz
from tests.conftest import RUN_ID, S3Server, free_port
from tests.service.helpers import create_key, env_for, start, stop, wait_until


@pytest.fixture
def values(tmp_path: Path, service_env: Path, redis_url: str, s3_server: S3Server, s3_bucket: str) -> dict[str, Any]:
    return {
        "data_dir": tmp_path / "data",
        "broker_url": redis_url,
        "queue_prefix": f"infoprune-test-{RUN_ID}.",
        "storage_backend": "s3",
        "s3_bucket": s3_bucket,
        "s3_endpoint_url": s3_server.endpoint,
        "s3_access_key_id": s3_server.access_key,
        "s3_secret_access_key": s3_server.secret_key,
        "log_level": "DEBUG",
    }


def _succeeded_job(settings: Settings, key: str) -> tuple[str, str]:
    """A finished job with one artifact, written straight to the database: (job id, tenant webhook secret)."""
    engine = make_engine(settings.sqlalchemy_url)
    with transaction(make_sessionmaker(engine)) as s:
        tenant_id = TenantAdmin(s).authenticate(key)
        assert tenant_id is not None
        job = Job(tenant_id=tenant_id, source="tiny", config={}, device_class="cpu", status="succeeded")
        job.stage, job.progress, job.finished_at = "done", 1.0, utcnow()
        s.add(job)
        s.flush()
        key_name = f"tenants/{tenant_id}/jobs/{job.id}/model.safetensors"
        s.add(
            Artifact(
                job_id=job.id,
                tenant_id=tenant_id,
                name="model.safetensors",
                storage_key=key_name,
                size=1,
                sha256="0" * 64,
            )
        )
        job_id, webhook_secret = job.id, s.get_one(Tenant, tenant_id).webhook_secret
    engine.dispose()
    return job_id, webhook_secret


def _exercise(client: Any, key: str, settings: Settings) -> list[str]:
    """Requests that carry or return every kind of secret; returns the secrets to look for."""
    bad = "ipk_" + secrets.token_urlsafe(32)
    h = {"Authorization": f"Bearer {key}"}
    assert client.get("/v1/jobs", headers=h).status_code == 200
    assert client.get("/v1/jobs", headers={"Authorization": f"Bearer {bad}"}).status_code == 401
    assert client.get(f"/v1/jobs?api_key={bad}", headers={"Authorization": f"Basic {bad}"}).status_code == 401
    archive = tgz({"config.json": b'{"model_type": "bert"}', "model.safetensors": b"\0" * 64})
    assert (
        client.post("/v1/models", content=archive, headers={**h, "Content-Type": "application/gzip"}).status_code == 201
    )
    job = {"source": "nothere", "config": {"target_flops_ratio": 0.5}, "webhook_url": "https://hooks.example/x"}
    assert client.post("/v1/jobs", json=job, headers=h).status_code == 422
    job_id, webhook_secret = _succeeded_job(settings, key)
    listing = client.get(f"/v1/jobs/{job_id}/artifacts", headers=h)
    assert listing.status_code == 200, listing.text
    query = parse_qs(urlsplit(listing.json()["data"][0]["url"]).query)
    signature = (query.get("X-Amz-Signature") or query["Signature"])[0]  # SigV4 or SigV2 presigning
    rotated = client.post("/v1/keys/rotate?grace_s=60", headers=h)
    assert rotated.status_code == 201
    new_key = rotated.json()["key"]
    assert client.get("/v1/jobs", headers={"Authorization": f"Bearer {new_key}"}).status_code == 200
    s3_secret = settings.s3_secret_access_key.get_secret_value() if settings.s3_secret_access_key else ""
    return [key, bad, new_key, webhook_secret, s3_secret, signature]


def _assert_absent(text: str, found_secrets: list[str]) -> None:
    assert all(len(s) >= 16 for s in found_secrets)
    for secret in found_secrets:
        assert secret not in text, f"a secret ({secret[:6]}...) is in the log"
        assert secret[len(secret) // 3 :] not in text  # nor its tail (e.g. after a cut prefix)


def test_no_secret_in_log_records(values: dict[str, Any], caplog: pytest.LogCaptureFixture) -> None:
    settings = Settings(**values)
    migrate.upgrade(settings.sqlalchemy_url)
    ctx = build_context(settings)
    with transaction(ctx.sessions) as s:
        admin = TenantAdmin(s)
        key = admin.create_key(admin.get_or_create_tenant("acme")[0])
    caplog.set_level(logging.DEBUG)
    with TestClient(create_app(ctx), raise_server_exceptions=False) as client:
        found = _exercise(client, key, settings)
    ctx.engine.dispose()
    records = [r for r in caplog.records if not r.name.startswith("httpx")]  # the test client's own log
    assert any(getattr(r, "path", None) == "/v1/keys/rotate" for r in records)  # the access log was captured
    text = "\n".join(f"{r.getMessage()} {r.exc_text or ''} {' '.join(map(str, r.__dict__.values()))}" for r in records)
    _assert_absent(text, found)


def test_no_secret_in_a_served_instance_log(values: dict[str, Any], tmp_path: Path) -> None:
    env = env_for(**values)
    settings = Settings(**values)
    key = create_key(env, "acme")  # also migrates the SQLite database
    port = free_port()
    log = tmp_path / "serve.log"
    proc = start(["serve", "--port", str(port)], env, log)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:

            def up() -> bool:
                try:
                    return client.get("/readyz").status_code == 200
                except httpx.TransportError:
                    return proc.poll() is not None  # stop waiting when it died

            wait_until(up, 90, "the API to serve")
            assert proc.poll() is None, log.read_text()[-3000:]
            found = _exercise(client, key, settings)
    finally:
        stop(proc)
    text = log.read_text()
    assert '"path": "/v1/keys/rotate"' in text and '"status_code": 401' in text  # the access log is there
    _assert_absent(text, found)
