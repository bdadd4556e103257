"""The scaled-out shape on real services: API + Celery workers (subprocesses) on Redis, PostgreSQL
for jobs, SeaweedFS S3 for artifacts and uploads. Includes killing a worker in the middle of a job."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from api import build_context, create_app
from infoprune_jobs.settings import Settings
from tests.conftest import FAST_CONFIG, RUN_ID, S3Server, free_port
from tests.service.helpers import (
    create_key,
    download_artifacts,
    env_for,
    kill_group,
    start,
    stop,
    tar_model,
    wait_for_job,
    wait_until,
)


@dataclass
class Stack:
    client: TestClient
    env: dict[str, str]
    headers: dict[str, str]
    logs: Path

    def worker(self, name: str, *extra: str) -> Any:
        return start(
            ["worker", "--device-class", "cpu", f"--hostname={name}-{RUN_ID}@%h", *extra],
            self.env,
            self.logs / f"{name}.log",
        )

    def job(self, job_id: str) -> dict[str, Any]:
        return self.client.get(f"/v1/jobs/{job_id}", headers=self.headers).json()  # type: ignore[no-any-return]

    def events(self, job_id: str) -> list[dict[str, Any]]:
        r = self.client.get(f"/v1/jobs/{job_id}/events?limit=1000", headers=self.headers)
        return r.json()["data"]  # type: ignore[no-any-return]


@pytest.fixture
def stack(
    tmp_path: Path,
    service_env: Path,
    pg_clean: str,
    redis_url: str,
    s3_server: S3Server,
    s3_bucket: str,
    tiny_model_dir: Path,
) -> Iterator[Stack]:
    values: dict[str, Any] = {
        "data_dir": tmp_path / "data",
        "database_url": pg_clean,
        "broker_url": redis_url,
        "storage_backend": "s3",
        "s3_bucket": s3_bucket,
        "s3_endpoint_url": s3_server.endpoint,
        "s3_access_key_id": s3_server.access_key,
        "s3_secret_access_key": s3_server.secret_key,
        "queue_prefix": f"infoprune-test-{RUN_ID}.",
        "lease_ttl_s": 3,
        "reaper_interval_s": 1,
    }
    env = env_for(**values)
    settings = Settings(**values)
    (settings.models_dir / "tiny-bert").parent.mkdir(parents=True)
    import shutil

    shutil.copytree(tiny_model_dir, settings.models_dir / "tiny-bert")
    key = create_key(env, "acme")
    ctx = build_context(settings)
    with TestClient(create_app(ctx), raise_server_exceptions=False) as client:
        yield Stack(client, env, {"Authorization": f"Bearer {key}"}, tmp_path)
    ctx.engine.dispose()


def test_job_through_celery_postgres_and_s3(stack: Stack, tmp_path: Path, tiny_model_dir: Path) -> None:
    from infoprune_core import load_compressed

    assert stack.client.get("/readyz").json()["checks"] == {"database": "ok", "broker": "ok", "storage": "ok"}
    assert stack.client.get("/readyz").json()["workers"] == {"cpu": 0}
    metrics_port = free_port()
    worker = stack.worker("w", "--metrics-port", str(metrics_port))
    try:
        ready = wait_until(lambda: _ready_with_worker(stack), 120, "the worker to announce itself")
        assert ready["status"] == "ok" and ready["warnings"] == []
        t0 = time.perf_counter()
        r = stack.client.post("/v1/jobs", json={"source": "tiny-bert", "config": FAST_CONFIG}, headers=stack.headers)
        assert r.status_code == 202, r.text
        job = wait_for_job(stack.client, r.json()["id"], stack.headers, timeout=180)
        wall = time.perf_counter() - t0
        assert job["status"] == "succeeded", (job, (tmp_path / "w.log").read_text()[-3000:])
        print(f"\ncelery+postgres+s3 job wall time (incl. worker start): {wall:.2f}s")
        names = download_artifacts(stack.client, job["id"], stack.headers, tmp_path / "a1")  # presigned S3 URLs
        assert {"config.json", "model.safetensors", "infoprune.json"} <= set(names)
        assert load_compressed(tmp_path / "a1") is not None

        # an uploaded archive (stored in S3) as the source of a second job
        up = stack.client.post(
            "/v1/models?name=tiny",
            content=tar_model(tiny_model_dir),
            headers={**stack.headers, "Content-Type": "application/gzip"},
        )
        assert up.status_code == 201, up.text
        t1 = time.perf_counter()
        r2 = stack.client.post(
            "/v1/jobs", json={"source": up.json()["source"], "config": FAST_CONFIG}, headers=stack.headers
        )
        job2 = wait_for_job(stack.client, r2.json()["id"], stack.headers, timeout=120)
        assert job2["status"] == "succeeded", job2
        print(f"celery+postgres+s3 job wall time (warm worker, uploaded source): {time.perf_counter() - t1:.2f}s")
        download_artifacts(stack.client, job2["id"], stack.headers, tmp_path / "a2")
        assert load_compressed(tmp_path / "a2") is not None

        # the worker's job metrics: its prefork child observed them, its main process serves them
        broken = stack.client.post(
            "/v1/jobs", json={"source": "nothing-here", "config": FAST_CONFIG}, headers=stack.headers
        )
        assert broken.status_code == 422
        (Path(stack.env["INFOPRUNE_DATA_DIR"]) / "models" / "empty").mkdir()
        failing = stack.client.post("/v1/jobs", json={"source": "empty", "config": FAST_CONFIG}, headers=stack.headers)
        assert wait_for_job(stack.client, failing.json()["id"], stack.headers, timeout=120)["status"] == "failed"
        metrics = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).text
        assert 'infoprune_job_queued_seconds_count{device_class="cpu"} 3.0' in metrics
        assert 'infoprune_job_stage_seconds_count{outcome="succeeded",stage="pruning_heads"}' in metrics
        assert 'infoprune_job_stage_seconds_count{outcome="succeeded",stage="uploading"} 2.0' in metrics
        assert 'infoprune_job_failures_total{device_class="cpu",reason="pipeline"} 1.0' in metrics
        api_metrics = stack.client.get("/metrics").text
        assert 'infoprune_workers{device_class="cpu"} 1.0' in api_metrics
    finally:
        stop(worker)
    log = (tmp_path / "w.log").read_text()
    assert "infoprune-test-secret" not in log
    claimed = [json.loads(line) for line in log.splitlines() if '"job claimed"' in line]
    assert len(claimed) == 3 and all(len(entry["job_id"]) == 32 for entry in claimed)  # logs carry the job id
    assert stack.client.get("/readyz").json()["workers"] == {"cpu": 0}  # a stopped worker withdraws


def _ready_with_worker(stack: Stack) -> dict[str, Any] | None:
    ready: dict[str, Any] = stack.client.get("/readyz").json()
    return ready if ready["workers"] == {"cpu": 1} else None


def test_killed_worker_job_finishes_exactly_once_on_another(stack: Stack, tmp_path: Path) -> None:
    first = stack.worker("first")
    second = None
    try:
        r = stack.client.post(
            "/v1/jobs",
            json={"source": "tiny-bert", "config": {**FAST_CONFIG, "heads": "infoprune", "gate_steps": 600}},
            headers=stack.headers,
        )
        job_id = r.json()["id"]
        mid_way = ("profiling", "pruning_heads", "compressing_ffn")
        wait_until(lambda: stack.job(job_id)["stage"] in mid_way, 120, "the job to be mid-way", 0.05)
        kill_group(first)  # SIGKILL: the worker and its child die without a word
        before = stack.events(job_id)
        assert stack.job(job_id)["status"] == "running"
        second = stack.worker("second")
        job = wait_for_job(stack.client, job_id, stack.headers, timeout=180)
        assert job["status"] == "succeeded", (job, (tmp_path / "second.log").read_text()[-3000:])
        assert job["attempts"] == 2
        lost, retried = job["attempt_history"]
        assert (lost["outcome"], retried["outcome"]) == ("lost", "succeeded")
        assert job["started_at"] == lost["started_at"] < retried["started_at"]  # the first start is kept
        work = Path(stack.env["INFOPRUNE_DATA_DIR"]) / "work"
        assert not list(work.glob(f"{job_id}-*"))  # the killed attempt's work folder is gone too
        progress = [e["progress"] for e in stack.events(job_id)]
        assert progress == sorted(progress)
        events = stack.events(job_id)
        assert events[: len(before)] == before  # the first attempt's events are intact
        assert any("requeued" in e["message"] for e in events)
        assert sum(e["kind"] == "status" and e["status"] == "succeeded" for e in events) == 1
        names = download_artifacts(stack.client, job_id, stack.headers, tmp_path / "a")
        assert len(names) == len(set(names))
    finally:
        kill_group(first)
        if second is not None:
            stop(second)
