"""`infoprune serve` with no configuration: SQLite, local artifacts, in-process worker, real pipeline.
The job is submitted over HTTP, polled to `succeeded`, and its artifact downloaded via signed URLs."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import httpx

from tests.conftest import FAST_CONFIG, free_port
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


def test_embedded_serve_runs_a_job_end_to_end(tmp_path: Path, tiny_model_dir: Path) -> None:
    from infoprune_core import load_compressed

    data = tmp_path / "data"
    env = env_for(data_dir=data)
    shutil.copytree(tiny_model_dir, data / "models" / "tiny-bert")
    key = create_key(env, "acme")
    assert key.startswith("ipk_")
    port = free_port()
    server = start(["serve", "--port", str(port)], env, tmp_path / "serve.log")
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            wait_until(lambda: _up(client), 120, "the server")
            assert client.get("/readyz").status_code == 200
            headers = {"Authorization": f"Bearer {key}"}
            t0 = time.perf_counter()
            r = client.post("/v1/jobs", json={"source": "tiny-bert", "config": FAST_CONFIG}, headers=headers)
            assert r.status_code == 202, r.text
            statuses = _stream_statuses(client, r.json()["id"], headers)  # live SSE until the job ends
            assert statuses[0] == "queued" and statuses[-1] == "succeeded" and "running" in statuses
            job = wait_for_job(client, r.json()["id"], headers, timeout=180)
            wall = time.perf_counter() - t0
            assert job["status"] == "succeeded", job
            print(f"\nembedded job wall time: {wall:.2f}s")
            report = client.get(f"/v1/jobs/{job['id']}/report", headers=headers).json()
            assert report
            names = download_artifacts(client, job["id"], headers, tmp_path / "artifact")
            assert {"config.json", "model.safetensors", "infoprune.json"} <= set(names)
            assert load_compressed(tmp_path / "artifact") is not None
            events = client.get(f"/v1/jobs/{job['id']}/events", headers=headers).json()["data"]
            assert events[0]["status"] == "queued" and events[-1]["status"] == "succeeded"
            # an uploaded archive as the source, stored in the local artifact folder
            up = client.post(
                "/v1/models?name=tiny",
                content=tar_model(tiny_model_dir),
                headers={**headers, "Content-Type": "application/gzip"},
            )
            assert up.status_code == 201, up.text
            r2 = client.post("/v1/jobs", json={"source": up.json()["source"], "config": FAST_CONFIG}, headers=headers)
            assert wait_for_job(client, r2.json()["id"], headers, timeout=120)["status"] == "succeeded"
    finally:
        stop(server)
    log = (tmp_path / "serve.log").read_text()
    assert key not in log  # logs never carry secrets
    assert '"job_id"' in log


def _up(client: httpx.Client) -> bool:
    try:
        return client.get("/healthz").status_code == 200
    except httpx.HTTPError:
        return False


def _stream_statuses(client: httpx.Client, job_id: str, headers: dict[str, str]) -> list[str]:
    statuses: list[str] = []
    sse = {**headers, "Accept": "text/event-stream"}
    with client.stream("GET", f"/v1/jobs/{job_id}/events", headers=sse, timeout=180) as r:
        assert r.status_code == 200
        for line in r.iter_lines():
            if line.startswith("event: end"):
                break
            if line.startswith("data: {") and line != "data: {}":
                statuses.append(json.loads(line[6:])["status"])
    return statuses


def test_killed_embedded_server_finishes_the_job_after_restart(tmp_path: Path, tiny_model_dir: Path) -> None:
    data = tmp_path / "data"
    env = env_for(data_dir=data, lease_ttl_s=2, reaper_interval_s=0.5)
    shutil.copytree(tiny_model_dir, data / "models" / "tiny-bert")
    key = create_key(env, "acme")
    headers = {"Authorization": f"Bearer {key}"}
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    first = start(["serve", "--port", str(port)], env, tmp_path / "first.log")
    try:
        with httpx.Client(base_url=base, timeout=30) as client:
            wait_until(lambda: _up(client), 120, "the server")
            body = {"source": "tiny-bert", "config": {**FAST_CONFIG, "heads": "infoprune", "gate_steps": 600}}
            job_id = client.post("/v1/jobs", json=body, headers=headers).json()["id"]
            mid_way = ("profiling", "pruning_heads", "compressing_ffn")
            wait_until(
                lambda: client.get(f"/v1/jobs/{job_id}", headers=headers).json()["stage"] in mid_way,
                120,
                "the job to be mid-way",
                0.05,
            )
    finally:
        kill_group(first)  # SIGKILL mid-job
    second = start(["serve", "--port", str(port)], env, tmp_path / "second.log")
    try:
        with httpx.Client(base_url=base, timeout=30) as client:
            wait_until(lambda: _up(client), 120, "the restarted server")
            job = wait_for_job(client, job_id, headers, timeout=180)
            assert job["status"] == "succeeded" and job["attempts"] == 2, job
            events = client.get(f"/v1/jobs/{job_id}/events?limit=1000", headers=headers).json()["data"]
            assert any("requeued" in e["message"] for e in events)
            assert sum(e["kind"] == "status" and e["status"] == "succeeded" for e in events) == 1
    finally:
        stop(second)
