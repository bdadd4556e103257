"""The job runner with the real core pipeline on a tiny model: success with artifacts, user errors,
cancellation, duplicate delivery, a dead worker's job finished exactly once, signed webhooks."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import tempfile
import threading
import time
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from infoprune_core.progress import STAGES
from infoprune_jobs import leases
from infoprune_jobs.db import transaction
from infoprune_jobs.models import Artifact, Job, JobEvent, Tenant, utcnow
from infoprune_jobs.states import JobStatus
from tests.worker.conftest import Submit
from worker import workdirs
from worker.heartbeat import Heartbeat, JobCancelled, LeaseLost
from worker.progress import MonotonicProgress, ProgressWriter
from worker.redact import PathRedactor
from worker.runner import RunnerContext, run_job


def _job(ctx: RunnerContext, job_id: str) -> Job:
    with ctx.sessions() as s:
        job = s.get(Job, job_id)
        assert job is not None
        return job


def _events(ctx: RunnerContext, job_id: str) -> list[JobEvent]:
    with ctx.sessions() as s:
        return list(s.scalars(select(JobEvent).where(JobEvent.job_id == job_id).order_by(JobEvent.id)))


def test_job_succeeds_with_artifacts_report_and_stage_events(
    runner_ctx: RunnerContext, submit: Submit, tmp_path: Path
) -> None:
    from infoprune_core import load_compressed

    job_id = submit()
    assert run_job(runner_ctx, job_id) == "succeeded"
    job = _job(runner_ctx, job_id)
    assert (job.status, job.stage, job.progress, job.attempts, job.error) == ("succeeded", "done", 1.0, 1, None)
    assert job.report and job.lease_owner is None
    stages = [e.stage for e in _events(runner_ctx, job_id) if e.kind == "stage"]
    assert stages[0] == "loading" and "pruning_heads" in stages and stages[-1] == "uploading"
    with runner_ctx.sessions() as s:
        artifacts = {a.name: a for a in s.scalars(select(Artifact).where(Artifact.job_id == job_id))}
    assert {"config.json", "model.safetensors", "infoprune.json"} <= set(artifacts)
    out = tmp_path / "download"
    out.mkdir()
    for name, artifact in artifacts.items():
        data = runner_ctx.storage.get_bytes(artifact.storage_key)
        assert hashlib.sha256(data).hexdigest() == artifact.sha256 and len(data) == artifact.size
        (out / name).write_bytes(data)
    assert load_compressed(out) is not None
    # progress never goes back, stages repeat (evaluating, ...) in any order
    events = _events(runner_ctx, job_id)
    progress = [e.progress for e in events]
    assert progress == sorted(progress) and progress[-1] == 1.0
    # what the tenant sees names no server folder: events, the report, the artifact's manifest
    seen = json.dumps([e.message for e in events]) + json.dumps(job.report) + (out / "infoprune.json").read_text()
    settings = runner_ctx.settings
    for folder in (settings.models_dir, settings.data_dir, settings.work_root, Path(tempfile.gettempdir())):
        assert str(folder) not in seen, folder
    assert job.report["model"]["source"] == "tiny-bert"
    assert [a.outcome for a in job.attempt_history] == ["succeeded"] and not any(settings.work_root.iterdir())
    # a redelivered message for the finished job does nothing
    assert run_job(runner_ctx, job_id) == "skipped"
    assert _job(runner_ctx, job_id).attempts == 1
    assert sum(e.status == "succeeded" and e.kind == "status" for e in _events(runner_ctx, job_id)) == 1


def test_bad_model_fails_with_the_core_message(runner_ctx: RunnerContext, submit: Submit, tmp_path: Path) -> None:
    pickled = runner_ctx.settings.models_dir / "pickled"
    pickled.mkdir()
    (pickled / "config.json").write_text("{}")
    (pickled / "pytorch_model.bin").write_bytes(b"x")
    job_id = submit(source="pickled")
    assert run_job(runner_ctx, job_id) == "failed"
    assert "pickle" in (_job(runner_ctx, job_id).error or "")
    bad_cfg = submit(target_flops_ratio=0.5, head_keep_ratio=0.5)
    assert run_job(runner_ctx, bad_cfg) == "failed"
    assert "invalid job" in (_job(runner_ctx, bad_cfg).error or "")
    elsewhere = submit(source="only-on-the-api-host")  # the API saw it; this worker's model root has not
    assert run_job(runner_ctx, elsewhere) == "failed"
    error = _job(runner_ctx, elsewhere).error or ""
    assert "INFOPRUNE_MODEL_ROOT" in error and str(runner_ctx.settings.models_dir) not in error


def test_a_class_whose_device_this_worker_lacks_fails_with_that_reason(
    runner_ctx: RunnerContext, submit: Submit
) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this host has a CUDA device")
    job_id = submit(device_class="gpu")
    assert run_job(runner_ctx, job_id) == "failed"
    error = _job(runner_ctx, job_id).error or ""
    assert "'gpu'" in error and "no usable CUDA device" in error and "internal error" not in error


def test_progress_is_monotonic_whatever_the_stage_order() -> None:
    progress = MonotonicProgress(["a", "b", "c"])
    reports = [("a", 0.0), ("a", 0.5), ("a", 0.3), ("b", 0.1), ("a", 0.0), ("c", 1.0), ("b", 0.0), ("b", 1.0)]
    values = [progress.update(stage, fraction) for stage, fraction in reports]
    assert values == sorted(values) and values[-1] < 0.95  # the rest is left for uploading
    assert values[2] == values[1]  # 0.5 -> 0.3 within a stage is ignored
    resumed = MonotonicProgress(["a"], start=0.6)  # a later attempt starts where the job stands
    assert resumed.update("a", 0.0) == 0.6 and resumed.update("a", 1.0) > 0.6


def test_stale_work_folders_are_removed(runner_ctx: RunnerContext, submit: Submit) -> None:
    root = runner_ctx.settings.work_root
    done, running = submit(), submit()
    with transaction(runner_ctx.sessions) as s:
        assert leases.claim(s, running, "alive", 60)
    for name in (f"{done}-1", f"{running}-1", f"{running}-0", "not-a-job"):
        (root / name).mkdir(parents=True)
    with transaction(runner_ctx.sessions) as s:
        assert sorted(workdirs.sweep(s, root)) == sorted([f"{done}-1", f"{running}-0"])
    assert sorted(p.name for p in root.iterdir()) == sorted([f"{running}-1", "not-a-job"])


class _Event:
    def __init__(self, stage: str, fraction: float = 0.0, message: str = "") -> None:
        self.stage, self.fraction, self.message = stage, fraction, message


def _writer(ctx: RunnerContext, heartbeat: Heartbeat) -> ProgressWriter:
    redactor = PathRedactor.for_job(model_root=ctx.settings.models_dir, work=Path("/w"), upload=None, others=[])
    return ProgressWriter(ctx.sessions, heartbeat, redactor, MonotonicProgress(STAGES), min_interval_s=0)


def test_progress_tick_stops_a_cancelled_job_and_a_lost_lease(runner_ctx: RunnerContext, submit: Submit) -> None:
    job_id = submit()
    with transaction(runner_ctx.sessions) as s:
        assert leases.claim(s, job_id, "me", 30)
    hb = Heartbeat(runner_ctx.sessions, job_id, "me", 30)
    writer = _writer(runner_ctx, hb)
    writer(_Event("profiling"))
    with transaction(runner_ctx.sessions) as s:
        s.get(Job, job_id).status = JobStatus.CANCELLING.value  # type: ignore[union-attr]
    try:
        writer(_Event("profiling", 0.5))
        raise AssertionError("cancellation not noticed")
    except JobCancelled:
        pass
    hb2 = Heartbeat(runner_ctx.sessions, job_id, "someone-else", 30)
    try:
        _writer(runner_ctx, hb2)(_Event("profiling"))
        raise AssertionError("lost lease not noticed")
    except LeaseLost:
        pass


def test_cancel_while_running_ends_cancelled(runner_ctx: RunnerContext, submit: Submit) -> None:
    job_id = submit(heads="infoprune", gate_steps=100_000)  # trained gates: long enough to be caught running
    result: list[str] = []
    thread = threading.Thread(target=lambda: result.append(run_job(runner_ctx, job_id)))
    thread.start()
    deadline = time.monotonic() + 60
    while _job(runner_ctx, job_id).stage not in ("pruning_heads", "compressing_ffn"):
        assert time.monotonic() < deadline and thread.is_alive(), _job(runner_ctx, job_id).status
        time.sleep(0.05)
    with transaction(runner_ctx.sessions) as s:
        s.get(Job, job_id).status = JobStatus.CANCELLING.value  # type: ignore[union-attr]
    thread.join(60)
    assert result == ["cancelled"]
    job = _job(runner_ctx, job_id)
    assert job.status == "cancelled" and job.lease_owner is None and job.report is None


def test_dead_workers_job_is_requeued_and_finishes_exactly_once(runner_ctx: RunnerContext, submit: Submit) -> None:
    job_id = submit()
    with transaction(runner_ctx.sessions) as s:  # a worker claims the job, writes progress, then dies
        assert leases.claim(s, job_id, "dead-worker", 30)
    with transaction(runner_ctx.sessions) as s:
        leases.record_progress(s, job_id, "dead-worker", "profiling", 0.2, "half way", "stage")
    leftover = runner_ctx.settings.work_root / f"{job_id}-1"  # the dead attempt's work folder
    (leftover / "out").mkdir(parents=True)
    first_start = _job(runner_ctx, job_id).started_at
    assert run_job(runner_ctx, job_id) == "skipped"  # redelivered while the lease is alive: not run twice
    with transaction(runner_ctx.sessions) as s:
        s.get(Job, job_id).lease_expires_at = utcnow() - timedelta(seconds=1)  # type: ignore[union-attr]
    with transaction(runner_ctx.sessions) as s:
        assert leases.requeue_expired(s) == [(job_id, "cpu")]
    assert run_job(runner_ctx, job_id) == "succeeded"
    assert run_job(runner_ctx, job_id) == "skipped"
    job = _job(runner_ctx, job_id)
    assert (job.status, job.attempts) == ("succeeded", 2)
    assert job.started_at == first_start and [a.outcome for a in job.attempt_history] == ["lost", "succeeded"]
    assert job.attempt_history[1].started_at > job.attempt_history[0].started_at
    assert not leftover.exists() and job.progress == 1.0
    progress = [e.progress for e in _events(runner_ctx, job_id)]
    assert progress == sorted(progress)  # the second attempt went on from the first one's 0.2
    messages = [e.message for e in _events(runner_ctx, job_id)]
    assert "half way" in messages and any("requeued" in m for m in messages)
    assert sum(e.kind == "status" and e.status == "succeeded" for e in _events(runner_ctx, job_id)) == 1


def test_completion_webhook_is_signed(runner_ctx: RunnerContext, submit: Submit) -> None:
    received: list[tuple[dict[str, str], bytes]] = []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["content-length"]))
            received.append(({k.lower(): v for k, v in self.headers.items()}, body))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *_: Any) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        job_id = submit(webhook_url=f"http://127.0.0.1:{server.server_port}/hook")
        assert run_job(runner_ctx, job_id) == "succeeded"
    finally:
        server.shutdown()
    ((headers, body),) = received
    with runner_ctx.sessions() as s:
        secret = s.scalars(select(Tenant.webhook_secret)).one()
    signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
    expected = base64.b64encode(
        hmac.new(base64.b64decode(secret.removeprefix("whsec_")), signed, hashlib.sha256).digest()
    ).decode()
    assert headers["webhook-signature"] == f"v1,{expected}"
    payload = json.loads(body)
    assert payload["type"] == "job.succeeded" and payload["data"]["id"] == job_id
    assert _events(runner_ctx, job_id)[-1].kind == "webhook"


def test_reports_are_made_json_safe_for_every_database() -> None:
    import numpy as np
    import torch

    from worker.runner import json_safe

    report = {
        "kl": float("nan"),
        "ranks": (1, float("inf")),
        "cos": np.float32(0.5),
        "t": torch.tensor(2.0),
        "path": Path("/x"),
        3: True,
    }
    assert json_safe(report) == {"kl": None, "ranks": [1, None], "cos": 0.5, "t": 2.0, "path": "/x", "3": True}
    json.dumps(json_safe(report), allow_nan=False)
