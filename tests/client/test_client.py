"""`infoprune_client` as a pipeline uses it, against real `infoprune serve` processes: in a process
where torch, SQLAlchemy and the server packages cannot be imported; retrying through a server that is
not up yet, rate limits (429 + Retry-After) and a restart in the middle of an event stream."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import httpx
import pytest

from infoprune_client import ArtifactCorrupt, Client, JobCancelled, JobFailed
from infoprune_client.retry import retry_after
from tests.client.conftest import Server, make_server
from tests.conftest import FAST_CONFIG
from tests.service.helpers import wait_until

RUNNER = """
import importlib.abc, sys, json, pathlib

class Refuse(importlib.abc.MetaPathFinder):
    BANNED = {"torch", "transformers", "sqlalchemy", "alembic", "fastapi", "starlette", "uvicorn", "celery",
              "redis", "boto3", "pydantic_settings"}
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in self.BANNED:
            raise ImportError(f"{name} is not installed on this pipeline runner")

sys.meta_path.insert(0, Refuse())
from infoprune_client import Client
url, key, out, config = sys.argv[1], sys.argv[2], pathlib.Path(sys.argv[3]), json.loads(sys.argv[4])
with Client(url, key) as client:
    first = client.submit("tiny-bert", config, idempotency_key="run-42")
    again = client.submit("tiny-bert", config, idempotency_key="run-42")   # a re-run of the step
    assert again.id == first.id
    seen = []
    job = client.wait(first.id, timeout_s=300, on_progress=lambda e: seen.append((e.stage, e.progress)))
    assert job.status == "succeeded" and seen and [p for _, p in seen] == sorted(p for _, p in seen)
    files = client.download(job.id, out)
    assert {f.name for f in files} >= {"config.json", "model.safetensors", "infoprune.json"}
    report = client.report(job.id)
    assert 0 < report.flops.scope_ratio <= 1 and report.model.source == "tiny-bert"
    assert job.id in [j.id for j in client.list(page_size=1)]
from infoprune_core.cli import main  # the `infoprune` command loads without the service installed
assert main(["jobs", "get", first.id, "--api-url", url, "--json"]) == 0
server_side = {m for m in sys.modules if m.split(".")[0] in ("api", "worker", "infoprune_jobs")}
assert server_side <= {"infoprune_jobs", "infoprune_jobs.cli"}, server_side
print("runner ok")
"""


def test_a_pipeline_runner_without_torch_or_the_server_packages(server: Server, tmp_path: Path) -> None:
    import json

    env = {**server.env, "INFOPRUNE_API_KEY": server.key}
    out = subprocess.run(
        [sys.executable, "-c", RUNNER, server.url, server.key, str(tmp_path / "m"), json.dumps(FAST_CONFIG)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0 and "runner ok" in out.stdout, out.stderr[-3000:]


def test_wait_raises_with_the_reason_and_download_checks_every_file(server: Server, tmp_path: Path) -> None:
    with Client(server.url, server.key) as client:
        long = client.submit("tiny-bert", {**FAST_CONFIG, "heads": "infoprune", "gate_steps": 100_000})
        client.cancel(long.id)
        with pytest.raises(JobCancelled) as cancelled:
            client.wait(long.id, timeout_s=120)
        assert cancelled.value.job.status == "cancelled"
        pickled = server.data / "models" / "only-pickles"
        pickled.mkdir()
        (pickled / "config.json").write_text('{"model_type": "bert"}')
        (pickled / "pytorch_model.bin").write_bytes(b"x")
        with pytest.raises(JobFailed, match="pickle") as failed:
            client.wait(client.submit("only-pickles", FAST_CONFIG).id)
        assert failed.value.job.status == "failed"
        done = client.wait(client.submit("tiny-bert", FAST_CONFIG).id, timeout_s=300)
        artifact = next(a for a in client.artifacts(done.id) if a.name == "model.safetensors")
        stored = next((server.data / "artifacts").rglob(f"*/{done.id}/model.safetensors"))
        stored.write_bytes(stored.read_bytes()[:-8] + b"tampered")  # same size, other bytes
        with pytest.raises(ArtifactCorrupt, match="sha256"):
            Client(server.url, server.key, attempts=2, max_wait_s=0.1).download(done.id, tmp_path / "m")
        assert artifact.size == stored.stat().st_size
        assert not (tmp_path / "m").exists() and list(tmp_path.iterdir()) == []  # nothing half-written


def test_retry_after_forms() -> None:
    def response(value: str) -> httpx.Response:
        return httpx.Response(429, headers={"Retry-After": value})

    assert retry_after(response("3")) == 3.0
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    assert 25 < (retry_after(response(later)) or 0) <= 30
    assert retry_after(response("soon")) is None and retry_after(httpx.Response(503)) is None


def test_retries_through_startup_rate_limits_and_a_restart_mid_stream(tmp_path: Path, tiny_model_dir: Path) -> None:
    flaky = make_server(tmp_path, tiny_model_dir, rate_limit_per_s=1, rate_limit_burst=2, lease_ttl_s=2,
                        reaper_interval_s=0.5)  # fmt: skip
    client = Client(flaky.url, flaky.key, attempts=12, max_wait_s=4)
    try:
        starting = threading.Thread(target=flaky.start)
        starting.start()  # the first call below is refused (connection errors) until the server is up
        long = {**FAST_CONFIG, "heads": "infoprune", "gate_steps": 100_000}  # trained gates: runs until cancelled
        job = client.submit("tiny-bert", long)
        starting.join()
        t0 = time.monotonic()
        for _ in range(5):  # burst 2, 1 request/s: 429 with Retry-After, waited out
            assert client.get(job.id).id == job.id
        assert time.monotonic() - t0 >= 2.0
        events: list[int] = []
        follower = threading.Thread(target=lambda: events.extend(e.id for e in client.events(job.id)))
        follower.start()
        wait_until(lambda: client.get(job.id).stage == "pruning_heads", 120, "the job to be mid-way")
        flaky.kill()  # the stream breaks off; the attempt dies with the server
        time.sleep(1)
        flaky.start()
        wait_until(lambda: client.get(job.id).attempts == 2, 60, "the second attempt")
        client.cancel(job.id)
        follower.join(120)
        assert not follower.is_alive()
        assert events == [e.id for e in client.events(job.id, follow=False)]  # resumed: every event, once
        finished = client.get(job.id)
        assert finished.status == "cancelled"
        assert [a.outcome for a in finished.attempt_history] == ["lost", "cancelled"]
        assert finished.started_at == finished.attempt_history[0].started_at  # the first start is kept
        assert finished.attempt_history[1].started_at > finished.attempt_history[0].started_at
    finally:
        client.close()
        flaky.stop()
    assert "429" in flaky.log.read_text()
