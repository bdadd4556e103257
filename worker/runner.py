"""Runs one job: claim the lease, fetch the source, call the core pipeline with a progress callback,
upload the artifact directory, record the outcome, send the webhook. Shared by the Celery task and
the embedded worker thread. ``infoprune_core`` (and so torch) is imported only here, lazily."""

from __future__ import annotations

import hashlib
import logging
import math
import os
import shutil
import socket
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from celery.exceptions import SoftTimeLimitExceeded
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from infoprune_jobs import leases
from infoprune_jobs.db import transaction
from infoprune_jobs.logs import job_context
from infoprune_jobs.models import Artifact, Job, Tenant
from infoprune_jobs.repository import TenantRepository
from infoprune_jobs.settings import Settings
from infoprune_jobs.states import JobStatus
from infoprune_jobs.storage import ArtifactStorage, StorageError, get_tree
from infoprune_jobs.webhooks import deliver
from worker.heartbeat import Heartbeat, JobCancelled, LeaseLost
from worker.progress import ProgressWriter

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass
class RunnerContext:
    settings: Settings
    sessions: sessionmaker[Session]
    storage: ArtifactStorage


class JobFailed(Exception):
    """A failure whose message is meant for the user."""


def prepare_process(threads: int) -> None:
    """Once per worker process (or embedded thread): torch threads, no library progress bars in logs."""
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    import torch
    import transformers

    torch.set_num_threads(threads)
    transformers.utils.logging.disable_progress_bar()


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def device_for(device_class: str) -> str:
    return "cuda" if device_class.startswith("gpu") else "cpu"


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
        with Heartbeat(ctx.sessions, job_id, owner, ctx.settings.lease_ttl_s) as heartbeat:
            status, error, report, artifacts = _execute(ctx, claim, heartbeat)
            if status is None:
                log.warning("lease lost; another worker owns the job now")
                return "lost"
            try:
                record = partial(_finish, ctx, job_id, owner, status, error=error, report=report, artifacts=artifacts)
                done = _while_db_away(ctx.settings.db_retry_s, record)
            except OperationalError:
                raise  # the database stayed away: the task retries; the lease protects the outcome
            except Exception:  # the outcome itself cannot be stored: record a failure instead
                log.exception("could not record the outcome")
                status, error = JobStatus.FAILED, "internal error: the result could not be recorded"
                with transaction(ctx.sessions) as session:
                    done = leases.finish(session, job_id, owner, status, error=error)
        if not done:
            log.warning("lease lost before the outcome was recorded")
            return "lost"
        log.info("job finished", extra={"status": status.value})
        if claim.webhook_url:
            _send_webhook(ctx, job_id, claim.webhook_url)
        return status.value


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


def _execute(
    ctx: RunnerContext, claim: leases.Claim, heartbeat: Heartbeat
) -> tuple[JobStatus | None, str | None, dict[str, Any] | None, list[Artifact]]:
    """(status, error, report, artifacts); status None when the lease was lost."""
    work = Path(tempfile.mkdtemp(prefix=f"infoprune-job-{claim.job_id[:12]}-"))
    progress = ProgressWriter(ctx.sessions, heartbeat)
    try:
        from infoprune_core import CompressionConfig, InfoPruneError, compress

        try:
            source = _materialise_source(ctx, claim, work, progress)
            config = CompressionConfig(
                **claim.config, device=device_for(claim.device_class), threads=ctx.settings.torch_threads
            )
            result = compress(source, work / "out", config, progress=progress, cache_dir=ctx.settings.cache_dir)
            heartbeat.check()
            progress.write("uploading", 0.96, "uploading artifacts", "stage")
            artifacts = _upload(ctx, claim, Path(result.output_dir), heartbeat)
            report = json_safe(result.report)
            return JobStatus.SUCCEEDED, None, report, artifacts
        except StorageError as exc:
            log.warning("artifact upload failed: %s", exc)
            return JobStatus.FAILED, f"could not store the artifacts: {exc}"[:4000], None, []
        except (InfoPruneError, JobFailed) as exc:
            log.info("job failed: %s", exc)
            return JobStatus.FAILED, str(exc)[:4000], None, []
        except ValueError as exc:  # pydantic ValidationError of the config is a ValueError
            log.info("job failed: %s", exc)
            return JobStatus.FAILED, f"invalid job: {exc}"[:4000], None, []
    except JobCancelled:
        log.info("job cancelled")
        return JobStatus.CANCELLED, None, None, []
    except LeaseLost:
        return None, None, None, []
    except SoftTimeLimitExceeded:
        log.warning("job hit the time limit")
        return JobStatus.FAILED, f"the job exceeded its time limit ({ctx.settings.job_time_limit_s}s)", None, []
    except Exception as exc:
        log.exception("job crashed")
        return JobStatus.FAILED, f"internal error ({type(exc).__name__}); see worker logs", None, []
    finally:
        shutil.rmtree(work, ignore_errors=True)


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
    """Uploaded models are fetched from storage into the work dir; other sources go to the core as-is."""
    if not claim.source.startswith("upload:"):
        return claim.source
    model_id = claim.source.removeprefix("upload:")
    with transaction(ctx.sessions) as session:
        model = TenantRepository(session, claim.tenant_id).get_uploaded_model(model_id)
        prefix = model.storage_prefix if model else None
    if prefix is None:
        raise JobFailed(f"uploaded model {model_id} no longer exists")
    progress.write("loading", 0.0, "fetching uploaded model", "stage")
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
