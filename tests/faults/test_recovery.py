"""What a worker finds when it starts: jobs of dead workers, and queued jobs whose message was lost."""

from __future__ import annotations

from datetime import timedelta

from infoprune_jobs.db import transaction
from infoprune_jobs.models import Job, utcnow
from infoprune_jobs.repository import TenantRepository
from infoprune_jobs.states import ACTIVE, JobStatus
from tests.conftest import FAST_CONFIG, S3Server
from tests.faults.conftest import FaultStack, MakeStack, assert_finished_once


def _orphan(stack: FaultStack, status: JobStatus, attempts: int, age_s: float) -> str:
    """A job row as a dead worker (or a broker that lost its message) leaves it; nothing is enqueued."""
    with transaction(stack.sessions) as session:
        job = TenantRepository(session, stack.tenant_id).add_job(
            source=str(stack.settings.models_dir / "tiny-bert"), config=dict(FAST_CONFIG), device_class="cpu"
        )
        past = utcnow() - timedelta(seconds=age_s)
        job.status, job.attempts, job.updated_at = status.value, attempts, past
        if status in ACTIVE:
            job.lease_owner, job.lease_expires_at = f"dead-host:1:{attempts}", past
        return job.id


def test_worker_start_recovers_orphaned_jobs(
    make_stack: MakeStack, pg_database: str, redis_url: str, s3_server: S3Server
) -> None:
    """Before any worker runs, the database holds: a running job whose lease expired (its worker
    died), one that already lost ``max_attempts`` workers, a cancelling one whose worker died, and a
    job queued an hour ago whose broker message never existed. The reaper interval is set far longer
    than the test, so only the pass at worker start can act: the first job is requeued and succeeds
    (attempt 2), the second fails with a reason, the third ends cancelled, the lost-message job is
    dispatched again and succeeds; no job stays queued, running or cancelling."""
    stack = make_stack(pg_database, redis_url, s3_server, reaper_interval_s=3600, queued_redispatch_after_s=60)
    dead = _orphan(stack, JobStatus.RUNNING, 1, 30)
    doomed = _orphan(stack, JobStatus.RUNNING, stack.settings.max_attempts, 30)
    cancelling = _orphan(stack, JobStatus.CANCELLING, 1, 30)
    lost = _orphan(stack, JobStatus.QUEUED, 0, 3600)
    stack.worker("w")

    job = stack.wait(dead, timeout=120)
    assert (job["status"], job["attempts"]) == ("succeeded", 2), (job, stack.log("w")[-3000:])
    assert any("lost; requeued" in e["message"] for e in assert_finished_once(stack, dead))

    job = stack.wait(lost, timeout=120)
    assert (job["status"], job["attempts"]) == ("succeeded", 1), job
    assert any("dispatched again" in e["message"] for e in assert_finished_once(stack, lost))

    job = stack.job(doomed)
    assert job["status"] == "failed", job
    assert job["error"] == f"gave up: the worker running this job was lost {stack.settings.max_attempts} times"
    assert_finished_once(stack, doomed, "failed")
    assert stack.job(cancelling)["status"] == "cancelled"
    assert_finished_once(stack, cancelling, "cancelled")
    with stack.sessions() as session:
        stuck = session.query(Job).filter(Job.status.in_(["queued", "running", "cancelling"])).count()
    assert stuck == 0
