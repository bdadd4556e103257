"""Worker-side job control through a lease in the database (the job row is the source of truth).

A worker runs a job only after :func:`claim` wins a conditional UPDATE; it renews the lease while it
works and writes results only while it still holds it. A redelivered message for a finished job, or for
a job whose lease is alive elsewhere, claims nothing. A dead worker's lease expires and
:func:`requeue_expired` hands the job back to the queue; a queued job whose broker message was lost is
found by :func:`take_stale_queued` and sent again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session

from infoprune_jobs.models import Artifact, Job, JobAttempt, JobEvent, utcnow
from infoprune_jobs.states import ACTIVE, TERMINAL, JobStatus


@dataclass(frozen=True)
class Claim:
    job_id: str
    tenant_id: str
    owner: str
    attempt: int
    source: str
    source_kind: str
    config: dict[str, Any]
    device_class: str
    webhook_url: str | None
    progress: float  # where the job's progress stands (never lower in this attempt)
    queued_s: float  # since the job was submitted, or since its previous attempt was lost


def _event(session: Session, job: Job, kind: str, message: str = "") -> None:
    session.add(JobEvent.snapshot(job, kind, message))


def claim(session: Session, job_id: str, owner: str, ttl_s: float) -> Claim | None:
    """Take the job if it is queued (or running under an expired lease). None: nothing to do.

    Each claim starts a new attempt; the job's ``started_at`` stays the first attempt's start, and its
    progress is kept (it never goes back, whatever the attempt)."""
    now = utcnow()
    result = session.execute(
        update(Job)
        .where(
            Job.id == job_id,
            or_(
                Job.status == JobStatus.QUEUED.value,
                (Job.status == JobStatus.RUNNING.value) & (Job.lease_expires_at < now),
            ),
        )
        .values(
            status=JobStatus.RUNNING.value,
            lease_owner=owner,
            lease_expires_at=now + timedelta(seconds=ttl_s),
            attempts=Job.attempts + 1,
            started_at=func.coalesce(Job.started_at, now),
            stage="loading",
            updated_at=now,
        )
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        return None
    job = session.get(Job, job_id, populate_existing=True)
    assert job is not None
    previous = job.attempt_history[-1] if job.attempt_history else None
    if previous is not None and previous.outcome == "running":  # its worker died before the reaper saw it
        previous.outcome, previous.finished_at = "lost", now
    queued_since = previous.finished_at if previous is not None and previous.finished_at else job.created_at
    job.attempt_history.append(JobAttempt(number=job.attempts, worker=owner, started_at=now))
    _event(session, job, "status", f"started (attempt {job.attempts}, worker {owner})")
    return Claim(
        job.id,
        job.tenant_id,
        owner,
        job.attempts,
        job.source,
        job.source_kind,
        dict(job.config),
        job.device_class,
        job.webhook_url,
        job.progress,
        max((now - queued_since).total_seconds(), 0.0),
    )


def _end_attempt(job: Job, outcome: str, now: datetime) -> None:
    """Close the job's current attempt (if it has one that is still open)."""
    current = job.attempt_history[-1] if job.attempt_history else None
    if current is not None and current.number == job.attempts and current.outcome == "running":
        current.outcome, current.finished_at = outcome, now


def renew(session: Session, job_id: str, owner: str, ttl_s: float) -> JobStatus | None:
    """Extend the lease; returns the job's status, or None when the lease is no longer ours."""
    now = utcnow()
    result = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.lease_owner == owner, Job.status.in_([s.value for s in ACTIVE]))
        .values(lease_expires_at=now + timedelta(seconds=ttl_s))
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        return None
    status = session.scalar(select(Job.status).where(Job.id == job_id))
    return JobStatus(status) if status is not None else None


def record_progress(
    session: Session, job_id: str, owner: str, stage: str, progress: float, message: str, kind: str
) -> JobStatus | None:
    """Write stage/progress (and an event) if we still hold the lease; returns the status or None (lost).
    Progress never decreases: a lower value (a retry, a stage the estimate got wrong) keeps the higher one."""
    job = session.get(Job, job_id, with_for_update=True, populate_existing=True)
    if job is None or job.lease_owner != owner or JobStatus(job.status) not in ACTIVE:
        return None
    job.stage, job.progress = stage, max(job.progress, progress)
    _event(session, job, kind, message)
    return JobStatus(job.status)


def finish(
    session: Session,
    job_id: str,
    owner: str,
    status: JobStatus,
    *,
    error: str | None = None,
    report: dict[str, Any] | None = None,
    artifacts: list[Artifact] | None = None,
) -> bool:
    """Record the outcome once, only while holding the lease. False: someone else owns the job now."""
    assert status in TERMINAL
    job = session.get(Job, job_id, with_for_update=True, populate_existing=True)
    if job is None or job.lease_owner != owner or JobStatus(job.status) not in ACTIVE:
        return False
    now = utcnow()
    job.status, job.error, job.finished_at = status.value, error, now
    job.lease_owner, job.lease_expires_at = None, None
    _end_attempt(job, status.value, now)
    if status is JobStatus.SUCCEEDED:
        job.report, job.stage, job.progress = report, "done", 1.0
        for artifact in artifacts or []:
            session.add(artifact)
    _event(session, job, "status", error or status.value)
    return True


def requeue_expired(session: Session, max_attempts: int = 3) -> list[tuple[str, str]]:
    """Jobs whose worker died: running -> queued (to be dispatched again), cancelling -> cancelled.

    A job that already lost ``max_attempts`` workers (say, it kills them by running out of memory)
    fails instead of going round forever. Returns (job id, device class) of the jobs to dispatch again.
    """
    now = utcnow()
    stmt = select(Job).where(Job.status.in_([s.value for s in ACTIVE]), Job.lease_expires_at < now)
    requeued: list[tuple[str, str]] = []
    for job in session.scalars(stmt.with_for_update(skip_locked=True)).all():
        if job.status == JobStatus.CANCELLING.value:
            job.status, job.finished_at = JobStatus.CANCELLED.value, now
            message = "cancelled (worker lost)"
        elif job.attempts >= max_attempts:
            job.status, job.finished_at = JobStatus.FAILED.value, now
            job.error = message = f"gave up: the worker running this job was lost {job.attempts} times"
        else:
            job.status = JobStatus.QUEUED.value
            requeued.append((job.id, job.device_class))
            message = f"worker {job.lease_owner} lost; requeued"
        job.lease_owner, job.lease_expires_at = None, None
        _end_attempt(job, "lost", now)
        _event(session, job, "status", message)
    return requeued


def queued_counts(session: Session) -> dict[str, int]:
    """Number of queued jobs per device class."""
    stmt = select(Job.device_class, func.count()).where(Job.status == JobStatus.QUEUED.value).group_by(Job.device_class)
    return {device_class: count for device_class, count in session.execute(stmt)}


def take_stale_queued(session: Session, device_class: str, older_than_s: float, limit: int) -> list[str]:
    """Up to ``limit`` jobs of ``device_class`` queued and untouched for ``older_than_s`` (oldest first),
    to be dispatched again because their broker message may be lost (say, Redis lost its data).

    Each is stamped (``updated_at``, an event), so it is sent again at most once per ``older_than_s``
    however many reapers run; a duplicate message is harmless, as only one :func:`claim` wins.
    """
    if limit <= 0:
        return []
    now = utcnow()
    stmt = (
        select(Job)
        .where(
            Job.status == JobStatus.QUEUED.value,
            Job.device_class == device_class,
            Job.updated_at < now - timedelta(seconds=older_than_s),
        )
        .order_by(Job.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    jobs = session.scalars(stmt).all()
    for job in jobs:
        job.updated_at = now
        _event(session, job, "status", f"no worker took the job for {older_than_s:g}s; dispatched again")
    return [job.id for job in jobs]


def get_job(session: Session, job_id: str) -> Job | None:
    return session.get(Job, job_id, populate_existing=True)
