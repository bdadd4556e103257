"""Tenancy, API keys and the state machine, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from sqlalchemy.orm import Session, sessionmaker

from infoprune_jobs.db import transaction
from infoprune_jobs.models import Job
from infoprune_jobs.repository import TenantAdmin, TenantRepository
from infoprune_jobs.security import KEY_PREFIX, hash_key
from infoprune_jobs.states import InvalidTransition, JobStatus, can_transition, sources_of

JOB = {"source": "/m", "config": {"target_flops_ratio": 0.5}, "device_class": "cpu"}


def test_keys_are_stored_hashed_and_authenticate(sessions: sessionmaker[Session]) -> None:
    with transaction(sessions) as s:
        admin = TenantAdmin(s)
        tenant, created = admin.get_or_create_tenant("acme")
        key = admin.create_key(tenant)
        assert created and key.startswith(KEY_PREFIX)
        assert admin.get_or_create_tenant("acme") == (tenant, False)
    with transaction(sessions) as s:
        rows = s.execute(__import__("sqlalchemy").text("SELECT key_hash, prefix FROM api_keys")).all()
        assert rows[0][0] == hash_key(key) and key not in rows[0]
        admin = TenantAdmin(s)
        assert admin.authenticate(key) == tenant.id
        assert admin.authenticate(key + "x") is None
        assert admin.authenticate(key[:-1] + ("A" if key[-1] != "A" else "B")) is None
        assert admin.revoke_key(rows[0][1])
    with transaction(sessions) as s:
        assert TenantAdmin(s).authenticate(key) is None


def test_every_query_is_tenant_scoped(sessions: sessionmaker[Session]) -> None:
    with transaction(sessions) as s:
        a, _ = TenantAdmin(s).get_or_create_tenant("a")
        b, _ = TenantAdmin(s).get_or_create_tenant("b")
        job_a = TenantRepository(s, a.id).add_job(**JOB, idempotency_key="k1")
        job_b = TenantRepository(s, b.id).add_job(**JOB, idempotency_key="k1")  # same key, other tenant: fine
    with transaction(sessions) as s:
        ra, rb = TenantRepository(s, a.id), TenantRepository(s, b.id)
        assert ra.get_job(job_b.id) is None and rb.get_job(job_a.id) is None
        assert [j.id for j in ra.list_jobs(status=None, before=None, limit=10)] == [job_a.id]
        assert ra.list_events(job_b.id, after=0, limit=10) == []
        assert len(rb.list_events(job_b.id, after=0, limit=10)) == 1
        assert ra.job_by_idempotency_key("k1").id == job_a.id  # type: ignore[union-attr]
        assert ra.list_artifacts(job_b.id) == []


def test_pagination_is_newest_first_and_stable(sessions: sessionmaker[Session]) -> None:
    with transaction(sessions) as s:
        t, _ = TenantAdmin(s).get_or_create_tenant("p")
        repo = TenantRepository(s, t.id)
        ids = [repo.add_job(**JOB).id for _ in range(5)]
    with transaction(sessions) as s:
        repo = TenantRepository(s, t.id)
        first = repo.list_jobs(status=None, before=None, limit=2)
        second = repo.list_jobs(status=None, before=first[-1].id, limit=10)
        assert [j.id for j in [*first, *second]] == sorted(ids, reverse=True)
        assert repo.list_jobs(status="running", before=None, limit=10) == []


def test_cancel_transitions(sessions: sessionmaker[Session]) -> None:
    with transaction(sessions) as s:
        t, _ = TenantAdmin(s).get_or_create_tenant("c")
        repo = TenantRepository(s, t.id)
        queued, running = repo.add_job(**JOB), repo.add_job(**JOB)
        running.status = "running"
        repo.request_cancel(queued)
        repo.request_cancel(running)
        assert (queued.status, running.status) == ("cancelled", "cancelling")
        assert queued.finished_at is not None
        with pytest.raises(InvalidTransition):
            repo.request_cancel(queued)


def test_state_machine_table() -> None:
    assert can_transition(JobStatus.QUEUED, JobStatus.RUNNING)
    assert not can_transition(JobStatus.SUCCEEDED, JobStatus.RUNNING)
    assert not can_transition(JobStatus.CANCELLED, JobStatus.QUEUED)
    assert sources_of(JobStatus.CANCELLING) == {JobStatus.RUNNING}
    assert Job.__table__.c.status.type.length >= max(len(s) for s in JobStatus)  # type: ignore[attr-defined]
