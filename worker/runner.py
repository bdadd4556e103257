"""Runs one job: claim the lease, fetch the source, call the core pipeline with a progress callback,
upload the artifact directory, record the outcome, send the webhook. Shared by the Celery task and
the embedded worker thread. The pipeline (and so torch) is imported only when a job runs."""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shutil
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from celery.exceptions import SoftTimeLimitExceeded
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from infoprune_client.schemas import PATH_FIELDS
from infoprune_core.config import CompressionConfig
from infoprune_core.progress import STAGES
from infoprune_jobs import job_metrics, leases
from infoprune_jobs.db import transaction
from infoprune_jobs.logs import job_context
from infoprune_jobs.models import Artifact, Job, Tenant
from infoprune_jobs.repository import TenantRepository
from infoprune_jobs.settings import Settings
from infoprune_jobs.sources import SourceRejected, local_path
from infoprune_jobs.states import JobStatus
from infoprune_jobs.storage import ArtifactStorage, StorageError, get_tree
from infoprune_jobs.webhooks import deliver
from worker import workdirs
from worker.devices import device_for, unusable
from worker.heartbeat import Heartbeat, JobCancelled, LeaseLost
from worker.progress import MonotonicProgress, ProgressWriter
from worker.redact import PathRedactor

log = logging.getLogger(__name__)
T = TypeVar("T")
PIPELINE_STAGES = (*STAGES, "downloading")  # the stages whose share of the progress is estimated


@dataclass
class RunnerContext:
    settings: Settings
    sessions: sessionmaker[Session]
    storage: ArtifactStorage


class JobFailed(Exception):
    """A failure whose message is meant for the user; ``reason`` labels it in the metrics."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


def prepare_process(threads: int) -> None:
    """Once per worker process (or embedded thread): torch threads, no library progress bars in logs."""
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    import torch
    import transformers

    torch.set_num_threads(threads)
    transformers.utils.logging.disable_progress_bar()


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


@dataclass
class Outcome:
    status: JobStatus | None  # None: the lease was lost
    error: str | None = None
    reason: str | None = None  # why it failed, for the metrics
    report: dict[str, Any] | None = None
    artifacts: list[Artifact] = field(default_factory=list)


def run_job(ctx: RunnerContext, job_id: str, owner: str | None = None) -> str:
    """Run the job if this worker can claim it. Returns the final status, 'skipped' or 'lost'."""
    owner = owner or worker_id()
    with job_context(job_id):
        with transaction(ctx.sessions) as session:
            claim = leases.claim(session, job_id, owner, ctx.settings.lease_ttl_s)
        if claim is None:
            log.info("job not claimable (finished, cancelled or running elsewhere); skipping")
            return "skipped"
        log.info("job claimed", extra={"attempt": claim.attempt, "worker": owner})
        job_metrics.QUEUED_SECONDS.labels(claim.device_class).observe(claim.queued_s)
        started = time.monotonic()
        with Heartbeat(ctx.sessions, job_id, owner, ctx.settings.lease_ttl_s) as heartbeat:
            outcome, stage_seconds = _execute(ctx, claim, heartbeat)
            if outcome.status is None:
                log.warning("lease lost; another worker owns the job now")
                return "lost"
            status = outcome.status
            try:
                record = partial(
                    _finish,
                    ctx,
                    job_id,
                    owner,
                    status,
                    error=outcome.error,
                    report=outcome.report,
                    artifacts=outcome.artifacts,
                )
                done = _while_db_away(ctx.settings.db_retry_s, record)
            except OperationalError:
                raise  # the database stayed away: the task retries; the lease protects the outcome
            except Exception:  # the outcome itself cannot be stored: record a failure instead
                log.exception("could not record the outcome")
                status, outcome.reason = JobStatus.FAILED, "internal"
                with transaction(ctx.sessions) as session:
                    done = leases.finish(
                        session, job_id, owner, status, error="internal error: the result could not be recorded"
                    )
        if not done:
            log.warning("lease lost before the outcome was recorded")
            return "lost"
        log.info("job finished", extra={"status": status.value})
        _observe(claim.device_class, status, outcome.reason, time.monotonic() - started, stage_seconds)
        if claim.webhook_url:
            _send_webhook(ctx, job_id, claim.webhook_url)
        return status.value


def _observe(
    device_class: str, status: JobStatus, reason: str | None, seconds: float, stages: dict[str, float]
) -> None:
    job_metrics.ATTEMPT_SECONDS.labels(device_class, status.value).observe(seconds)
    for stage, stage_s in stages.items():
        job_metrics.STAGE_SECONDS.labels(stage, status.value).observe(stage_s)
    if status is JobStatus.FAILED:
        job_metrics.FAILURES.labels(device_class, reason or "internal").inc()


def _finish(ctx: RunnerContext, job_id: str, owner: str, status: JobStatus, **outcome: Any) -> bool:
    with transaction(ctx.sessions) as session:
        return leases.finish(session, job_id, owner, status, **outcome)


def _while_db_away(limit_s: float, op: Callable[[], T]) -> T:
    """Run ``op``, retrying with backoff for up to ``limit_s`` while the database is unreachable
    (a restart or failover); the heartbeat keeps trying to hold the lease meanwhile."""
    deadline = time.monotonic() + limit_s
    delay = 0.25
    while True:
        try:
            return op()
        except OperationalError:
            if time.monotonic() + delay > deadline:
                raise
            log.warning("database unreachable; retrying in %.2fs", delay)
            time.sleep(delay)
            delay = min(delay * 2, 5.0)


def job_config(options: dict[str, Any], settings: Settings, device: str) -> CompressionConfig:
    """What the pipeline runs: the tenant's options (files resolved inside this worker's model root),
    the pipeline's defaults for the rest, and the service's device and threads."""
    values = dict(options)
    for name in PATH_FIELDS:
        if values.get(name) is not None:
            values[name] = str(_inside_model_root(values[name], settings, want_dir=False))
    return CompressionConfig(**values, device=device, threads=settings.torch_threads)


def _inside_model_root(name: str, settings: Settings, *, want_dir: bool) -> Path:
    try:
        return local_path(name, settings.models_dir, want_dir=want_dir)
    except SourceRejected as exc:
        raise JobFailed(
            f"{exc} of the worker that took this job (API and workers need the same INFOPRUNE_MODEL_ROOT contents)",
            "source",
        ) from exc


def _execute(ctx: RunnerContext, claim: leases.Claim, heartbeat: Heartbeat) -> tuple[Outcome, dict[str, float]]:
    """The attempt's outcome and its seconds per stage."""
    settings = ctx.settings
    work = workdirs.fresh(settings.work_root, claim.job_id, claim.attempt)
    redactor = PathRedactor.for_job(
        model_root=settings.models_dir,
        work=work,
        upload=(work / "source", claim.source) if claim.source_kind == "upload" else None,
        others=[settings.data_dir, settings.cache_dir],
    )
    progress = ProgressWriter(ctx.sessions, heartbeat, redactor, MonotonicProgress(PIPELINE_STAGES, claim.progress))
    try:
        return _attempt(ctx, claim, heartbeat, work, progress, redactor), progress.finish_timing()
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _attempt(
    ctx: RunnerContext,
    claim: leases.Claim,
    heartbeat: Heartbeat,
    work: Path,
    progress: ProgressWriter,
    redactor: PathRedactor,
) -> Outcome:
    try:
        from infoprune_core import InfoPruneError, compress

        try:
            device = device_for(claim.device_class)
            if (problem := unusable(device)) is not None:
                raise JobFailed(
                    f"device class {claim.device_class!r} runs on {device}, and the worker that took this job has "
                    f"{problem}; run workers of this class on hosts with such a device",
                    "device",
                )
            source = _materialise_source(ctx, claim, work, progress)
            try:
                config = job_config(claim.config, ctx.settings, device)
            except ValueError as exc:  # pydantic's ValidationError is a ValueError
                raise JobFailed(f"invalid job: {exc}", "invalid_config") from exc
            result = compress(source, work / "out", config, progress=progress, cache_dir=ctx.settings.cache_dir)
            heartbeat.check()
            _redact_manifest(Path(result.output_dir), redactor)
            progress.stage("uploading", "uploading artifacts", 0.96)
            artifacts = _upload(ctx, claim, Path(result.output_dir), heartbeat)
            return Outcome(JobStatus.SUCCEEDED, report=redactor.document(json_safe(result.report)), artifacts=artifacts)
        except StorageError as exc:
            log.warning("artifact upload failed: %s", exc)
            return _failed(redactor, f"could not store the artifacts: {exc}", "storage")
        except JobFailed as exc:
            log.info("job failed: %s", exc)
            return _failed(redactor, str(exc), exc.reason)
        except InfoPruneError as exc:
            log.info("job failed: %s", exc)
            return _failed(redactor, str(exc), "pipeline")
    except JobCancelled:
        log.info("job cancelled")
        return Outcome(JobStatus.CANCELLED)
    except LeaseLost:
        return Outcome(None)
    except SoftTimeLimitExceeded:
        log.warning("job hit the time limit")
        return _failed(redactor, f"the job exceeded its time limit ({ctx.settings.job_time_limit_s}s)", "time_limit")
    except Exception as exc:
        log.exception("job crashed")
        return _failed(redactor, f"internal error ({type(exc).__name__}); see worker logs", "internal")


def _failed(redactor: PathRedactor, error: str, reason: str) -> Outcome:
    return Outcome(JobStatus.FAILED, error=redactor.text(error)[:4000], reason=reason)


def _redact_manifest(out_dir: Path, redactor: PathRedactor) -> None:
    """The artifact's manifest names the source and the report as the pipeline saw them: redact it too."""
    from infoprune_core.artifacts import MANIFEST

    manifest = out_dir / MANIFEST
    manifest.write_text(json.dumps(redactor.document(json.loads(manifest.read_text())), indent=2))


def json_safe(value: Any) -> Any:
    """A JSON document any database accepts: non-finite floats become null, other objects strings."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, str | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if hasattr(value, "item"):  # numpy / torch scalars
        return json_safe(value.item())
    return str(value)


def _materialise_source(ctx: RunnerContext, claim: leases.Claim, work: Path, progress: ProgressWriter) -> str:
    """Uploaded models are fetched from storage into the work folder, local ones resolved inside this
    worker's model root; hub ids and S3 URIs go to the core as they are."""
    if claim.source_kind == "local":
        return str(_inside_model_root(claim.source, ctx.settings, want_dir=True))
    if claim.source_kind != "upload":
        return claim.source
    model_id = claim.source.removeprefix("upload:")
    with transaction(ctx.sessions) as session:
        model = TenantRepository(session, claim.tenant_id).get_uploaded_model(model_id)
        prefix = model.storage_prefix if model else None
    if prefix is None:
        raise JobFailed(f"uploaded model {model_id} no longer exists", "source")
    progress.stage("downloading", "fetching the uploaded model")
    target = work / "source"
    get_tree(ctx.storage, prefix, target)
    return str(target)


def _upload(ctx: RunnerContext, claim: leases.Claim, out_dir: Path, heartbeat: Heartbeat) -> list[Artifact]:
    """Upload the output files under the job's prefix. Keys depend only on the job and file name, so a
    second attempt overwrites the first one's objects instead of adding to them. The artifacts become
    visible only when :func:`leases.finish` records them with the outcome."""
    prefix = f"tenants/{claim.tenant_id}/jobs/{claim.job_id}"
    artifacts = []
    for path in sorted(p for p in out_dir.rglob("*") if p.is_file() and not p.is_symlink()):
        try:
            heartbeat.check()
        except JobCancelled:  # the job is still ours: leave nothing of it in the store (best effort)
            try:
                ctx.storage.delete_prefix(prefix)
            except StorageError:
                log.warning("could not remove the uploaded files of a cancelled job", exc_info=True)
            raise
        name = path.relative_to(out_dir).as_posix()
        key = f"{prefix}/{name}"
        ctx.storage.put_file(key, path)
        artifacts.append(
            Artifact(
                job_id=claim.job_id,
                tenant_id=claim.tenant_id,
                name=name,
                storage_key=key,
                size=path.stat().st_size,
                sha256=_sha256(path),
            )
        )
    return artifacts


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _send_webhook(ctx: RunnerContext, job_id: str, url: str) -> None:
    with transaction(ctx.sessions) as session:
        job = session.get(Job, job_id)
        tenant = session.get(Tenant, job.tenant_id) if job else None
        if job is None or tenant is None:
            return
        data = {
            "id": job.id,
            "status": job.status,
            "error": job.error,
            "finished_at": job.finished_at,
            "links": {
                "self": f"/v1/jobs/{job.id}",
                "artifacts": f"/v1/jobs/{job.id}/artifacts",
                "report": f"/v1/jobs/{job.id}/report",
            },
        }
        secret, status = tenant.webhook_secret, job.status
    s = ctx.settings
    _, detail = deliver(
        url,
        secret,
        f"job.{status}",
        data,
        msg_id=f"msg_{job_id}_{status}",
        attempts=s.webhook_attempts,
        timeout_s=s.webhook_timeout_s,
        allow_private=s.webhook_allow_private,
    )
    with transaction(ctx.sessions) as session:
        job = session.get(Job, job_id)
        if job is not None:
            TenantRepository(session, job.tenant_id).add_event(job, "webhook", detail)
