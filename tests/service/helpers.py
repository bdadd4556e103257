"""Process helpers for the end-to-end tests: run the real `infoprune` commands as subprocesses."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

_SCRIPT = Path(sys.executable).parent / "infoprune"
INFOPRUNE = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "infoprune_core.cli"]
TERMINAL = {"succeeded", "failed", "cancelled"}


def env_for(**values: Any) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("INFOPRUNE_")}
    env.update({f"INFOPRUNE_{k.upper()}": str(v) for k, v in values.items() if v is not None})
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


def start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [*INFOPRUNE, *args],
        env=env,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
        cwd=Path(__file__).resolve().parents[2],
    )


def kill_group(proc: subprocess.Popen[bytes], sig: int = signal.SIGKILL) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, sig)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def stop(proc: subprocess.Popen[bytes]) -> None:
    kill_group(proc, signal.SIGTERM)


def create_key(env: dict[str, str], tenant: str) -> str:
    out = subprocess.run(
        [*INFOPRUNE, "keys", "create", "--tenant", tenant],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return out.stdout.strip()


def wait_until(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def wait_for_job(client: httpx.Client | Any, job_id: str, headers: dict[str, str], timeout: float) -> dict:
    def done() -> dict | None:
        job = client.get(f"/v1/jobs/{job_id}", headers=headers).json()
        return job if job["status"] in TERMINAL else None

    return wait_until(done, timeout, f"job {job_id} to finish")  # type: ignore[no-any-return]


def download_artifacts(client: Any, job_id: str, headers: dict[str, str], dest: Path) -> list[str]:
    """Fetch every artifact through its expiring URL with a plain HTTP client (no API key)."""
    listing = client.get(f"/v1/jobs/{job_id}/artifacts", headers=headers)
    assert listing.status_code == 200, listing.text
    dest.mkdir(parents=True, exist_ok=True)
    names = []
    for item in listing.json()["data"]:
        r = httpx.get(item["url"], timeout=30)
        assert r.status_code == 200, (item["url"], r.status_code)
        (dest / item["name"]).write_bytes(r.content)
        names.append(item["name"])
    return names


def tar_model(directory: Path) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        tar.add(directory, arcname="model")
    return buf.getvalue()
