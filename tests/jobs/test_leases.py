"""The DB lease: a job is claimed once, a finished job never re-runs, a dead worker's job is requeued."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

from sqlalchemy.orm import Session, sessionmaker

from infoprune_jobs import leases
from infoprune_jobs.db import transaction
from infoprune_jobs.models import Job, JobEvent, utcnow
from infoprune_jobs.repository import TenantAdmin, TenantRepository
from infoprune_jobs.states import JobStatus


def _job(sessions: sessionmaker[Session]) -> str:
    with transaction(sessions) as s:
        t, _ = TenantAdmin(s).get_or_create_tenant("lease")
        return TenantRepository(s, t.id).add_job(source="/m", config={}, device_class="cpu").id


def test_claim_once_then_finish_once(sessions: sessionmaker[Session]) -> None:
    job_id = _job(sessions)
    with transaction(sessions) as s:
        claim = leases.claim(s, job_id, "w1", 60)
    assert claim is not None and claim.attempt == 1
    with transaction(sessions) as s:
        assert leases.claim(s, job_id, "w2", 60) is None  # live lease elsewhere
        assert leases.renew(s, job_id, "w2", 60) is None
        assert leases.renew(s, job_id, "w1", 60) is JobStatus.RUNNING
    with transaction(sessions) as s:
        assert leases.finish(s, job_id, "w1", JobStatus.SUCCEEDED, report={"ok": 1})
    with transaction(sessions) as s:
        assert not leases.finish(s, job_id, "w1", JobStatus.FAILED, error="late")
        assert leases.claim(s, job_id, "w3", 60) is None  # redelivery of a finished job: nothing to do
        job = s.get(Job, job_id)
        assert job is not None and (job.status, job.report, job.attempts) == ("succeeded", {"ok": 1}, 1)


def test_concurrent_claims_have_one_winner(sessions: sessionmaker[Session]) -> None:
    job_id = _job(sessions)
    wins: list[str] = []
    barrier = threading.Barrier(4)

    def race(owner: str) -> None:
        barrier.wait()
        with transaction(sessions) as s:
            if leases.claim(s, job_id, owner, 60):
                wins.append(owner)

    threads = [threading.Thread(target=race, args=(f"w{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(wins) == 1


def test_expired_lease_requeues_and_cancelling_becomes_cancelled(sessions: sessionmaker[Session]) -> None:
    job_id, other = _job(sessions), _job(sessions)
    with transaction(sessions) as s:
        leases.claim(s, job_id, "dead", 0.01)
        leases.claim(s, other, "dead2", 0.01)
        s.get(Job, other).status = JobStatus.CANCELLING.value  # type: ignore[union-attr]
    time.sleep(0.05)
    with transaction(sessions) as s:
        assert leases.renew(s, job_id, "dead", 60) is JobStatus.RUNNING or True  # renew races are fine
    with transaction(sessions) as s:
        j = s.get(Job, job_id)
        assert j is not None
        j.lease_expires_at = utcnow() - timedelta(seconds=1)
    with transaction(sessions) as s:
        requeued = leases.requeue_expired(s)
    assert requeued == [(job_id, "cpu")]
    with transaction(sessions) as s:
        assert s.get(Job, other).status == "cancelled"  # type: ignore[union-attr]
        claim = leases.claim(s, job_id, "w2", 60)
        assert claim is not None and claim.attempt == 2
        # the dead worker may not write anymore
        assert leases.record_progress(s, job_id, "dead", "profiling", 0.5, "", "progress") is None
        kinds = [e.message for e in s.query(JobEvent).filter(JobEvent.job_id == job_id).order_by(JobEvent.id)]
        assert any("requeued" in m for m in kinds)


def test_a_job_that_keeps_killing_workers_fails(sessions: sessionmaker[Session]) -> None:
    job_id = _job(sessions)
    for attempt in range(1, 4):
        with transaction(sessions) as s:
            assert leases.claim(s, job_id, f"w{attempt}", 60)
            s.get(Job, job_id).lease_expires_at = utcnow() - timedelta(seconds=1)  # type: ignore[union-attr]
        with transaction(sessions) as s:
            requeued = leases.requeue_expired(s, max_attempts=3)
        assert requeued == ([(job_id, "cpu")] if attempt < 3 else [])
    with transaction(sessions) as s:
        job = s.get(Job, job_id)
        assert job is not None and job.status == "failed" and "lost 3 times" in (job.error or "")
