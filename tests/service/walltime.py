"""Wall time of jobs, embedded `infoprune serve` vs API + Celery worker + PostgreSQL + Redis + S3.

    .venv/bin/python -m tests.service.walltime MODEL_DIR '{"target_flops_ratio": 0.5}' [RUNS]

Needs PostgreSQL and Redis as for the tests; starts its own SeaweedFS. Times each job from POST to
`succeeded` with the worker already up (first job = fresh process), then downloads the artifacts
through their URLs and loads them. Not collected by pytest.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import psycopg

from infoprune_jobs import migrate
from tests.conftest import PG_ADMIN_URL, REDIS_URL, S3_KEY, S3_SECRET, free_port, weed_mini_command
from tests.service.helpers import TERMINAL, create_key, env_for, start, stop, wait_until


def _up(client: httpx.Client) -> bool:
    try:
        return client.get("/healthz").status_code == 200
    except httpx.HTTPError:
        return False


def run_jobs(base: str, key: str, config: dict[str, Any], runs: int, work: Path) -> list[tuple[str, float]]:
    from infoprune_core import load_compressed

    results = []
    with httpx.Client(base_url=base, timeout=60) as client:
        wait_until(lambda: _up(client), 120, "the server")
        headers = {"Authorization": f"Bearer {key}"}
        for _ in range(runs):
            t0 = time.perf_counter()
            job_id = client.post("/v1/jobs", json={"source": "m", "config": config}, headers=headers).json()["id"]

            def done(job_id: str = job_id) -> dict[str, Any] | None:
                job: dict[str, Any] = client.get(f"/v1/jobs/{job_id}", headers=headers).json()
                return job if job["status"] in TERMINAL else None

            job = wait_until(done, 3600, "the job", 0.1)
            results.append((job["status"], round(time.perf_counter() - t0, 2)))
            if job["status"] == "succeeded":
                target = work / job_id
                target.mkdir()
                for item in client.get(f"/v1/jobs/{job_id}/artifacts", headers=headers).json()["data"]:
                    (target / item["name"]).write_bytes(httpx.get(item["url"]).content)
                load_compressed(target)
    return results


def main(model: Path, config: dict[str, Any], runs: int) -> None:
    work = Path(tempfile.mkdtemp(prefix="infoprune-walltime-"))
    try:
        data = work / "embedded"
        shutil.copytree(model, data / "models" / "m")
        env = env_for(data_dir=data)
        port = free_port()
        server = start(["serve", "--port", str(port)], env, work / "embedded.log")
        try:
            print("embedded:", run_jobs(f"http://127.0.0.1:{port}", create_key(env, "t"), config, runs, work))
        finally:
            stop(server)
        scaled_out(model, config, runs, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def scaled_out(model: Path, config: dict[str, Any], runs: int, work: Path) -> None:
    name = f"infoprune_walltime_{uuid.uuid4().hex[:6]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = PG_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1) + f"/{name}"
    (work / "weed").mkdir()
    command, ports = weed_mini_command(work / "weed")
    weed = subprocess.Popen(
        command,
        env={"AWS_ACCESS_KEY_ID": S3_KEY, "AWS_SECRET_ACCESS_KEY": S3_SECRET, "PATH": "/usr/bin:/bin"},
        stdout=(work / "weed.log").open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    prefix = f"infoprune-walltime-{uuid.uuid4().hex[:6]}."
    data = work / "scaled"
    shutil.copytree(model, data / "models" / "m")
    env = env_for(
        data_dir=data,
        database_url=url,
        broker_url=REDIS_URL,
        storage_backend="s3",
        s3_bucket=f"walltime-{uuid.uuid4().hex[:8]}",
        s3_endpoint_url=f"http://127.0.0.1:{ports['s3.port']}",
        s3_access_key_id=S3_KEY,
        s3_secret_access_key=S3_SECRET,
        queue_prefix=prefix,
    )
    api = worker = None
    try:
        migrate.upgrade(url)
        wait_until(lambda: _up(httpx.Client(base_url=env["INFOPRUNE_S3_ENDPOINT_URL"])), 60, "S3")
        key = create_key(env, "t")
        port = free_port()
        api = start(["serve", "--port", str(port)], env, work / "api.log")
        worker = start(["worker", "--device-class", "cpu"], env, work / "worker.log")
        wait_until(lambda: "ready." in (work / "worker.log").read_text(), 120, "the worker")
        print("celery+postgres+s3:", run_jobs(f"http://127.0.0.1:{port}", key, config, runs, work))
    finally:
        for proc in (worker, api):
            if proc is not None:
                stop(proc)
        weed.terminate()
        weed.wait(15)
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        import redis

        client = redis.Redis.from_url(REDIS_URL)
        for key_name in client.scan_iter(f"*{prefix}*"):
            client.delete(key_name)


if __name__ == "__main__":
    main(Path(sys.argv[1]), json.loads(sys.argv[2]), int(sys.argv[3]) if len(sys.argv) > 3 else 2)
