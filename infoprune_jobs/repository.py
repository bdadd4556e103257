"""Tenant-scoped data access for the API. Every query passes through :meth:`TenantRepository.scoped`.

Repositories never commit: the request (or task) boundary owns the transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any, TypeVar

from sqlalchemy import Select, delete, func, select, update
from sqlalchemy.orm import Session

from infoprune_jobs.models import ApiKey, Artifact, Job, JobEvent, Tenant, UploadedModel, utcnow
from infoprune_jobs.security import key_matches, key_prefix, new_api_key, new_webhook_secret
from infoprune_jobs.states import JobStatus, check_transition

T = TypeVar("T", bound=Any)
Scoped = Job | JobEvent | Artifact | UploadedModel


class TenantRepository:
    """All reads and writes a tenant's API key may perform."""

    def __init__(self, session: Session, tenant_id: str) -> None:
        self.session = session
        self.tenant_id = tenant_id

    def scoped(self, stmt: Select[T], model: type[Scoped]) -> Select[T]:
        """The one place tenancy is enforced: restrict ``stmt`` to this tenant's rows of ``model``."""
        return stmt.where(model.tenant_id == self.tenant_id)

    # -- jobs ---------------------------------------------------------------------------------
    def get_job(self, job_id: str, *, for_update: bool = False) -> Job | None:
        stmt = self.scoped(select(Job), Job).where(Job.id == job_id)
        if for_update:
            stmt = stmt.with_for_update()
        return self.session.scalars(stmt).one_or_none()

    def job_by_idempotency_key(self, key: str) -> Job | None:
        stmt = self.scoped(select(Job), Job).where(Job.idempotency_key == key)
        return self.session.scalars(stmt).one_or_none()

    def list_jobs(self, *, status: str | None, before: str | None, limit: int) -> Sequence[Job]:
        """Newest first; ``before`` is the id of the last job of the previous page (ids sort by time)."""
        stmt = self.scoped(select(Job), Job)
        if status is not None:
            stmt = stmt.where(Job.status == status)
        if before is not None:
            stmt = stmt.where(Job.id < before)
        return self.session.scalars(stmt.order_by(Job.id.desc()).limit(limit)).all()

    def add_job(self, *, message: str = "job created", **fields: Any) -> Job:
        job = Job(tenant_id=self.tenant_id, **fields)
        self.session.add(job)
        self.session.flush()
        self.add_event(job, "status", message)
        return job

    def lock_tenant(self) -> None:
        """Lock this tenant until the transaction ends: its submissions check their quota one at a time."""
        if self.session.get_bind().dialect.name == "sqlite":  # no row locks: a write takes the database's lock
            self.session.execute(update(Tenant).where(Tenant.id == self.tenant_id).values(name=Tenant.name))
        else:
            # FOR NO KEY UPDATE: serialises submissions without waiting for the key-share locks that every
            # insert of a job, event or artifact of this tenant takes (a worker mid-transaction)
            self.session.execute(select(Tenant.id).where(Tenant.id == self.tenant_id).with_for_update(key_share=True))

    def count_active_jobs(self) -> int:
        """Jobs that hold or wait for a worker: queued, running, cancelling."""
        active = (JobStatus.QUEUED.value, JobStatus.RUNNING.value, JobStatus.CANCELLING.value)
        stmt = self.scoped(select(func.count()).select_from(Job), Job).where(Job.status.in_(active))
        return int(self.session.scalar(stmt) or 0)

    def withdraw_job(self, job: Job) -> None:
        """Delete a job that could not be enqueued (and its events), as if it was never submitted."""
        self.session.execute(delete(JobEvent).where(JobEvent.job_id == job.id, JobEvent.tenant_id == self.tenant_id))
        self.session.delete(job)
        self.session.flush()

    def request_cancel(self, job: Job) -> Job:
        """queued -> cancelled at once; running -> cancelling (the worker stops at its next tick)."""
        current = JobStatus(job.status)
        if current is JobStatus.CANCELLING:
            return job
        target = JobStatus.CANCELLED if current is JobStatus.QUEUED else JobStatus.CANCELLING
        check_transition(current, target)
        job.status = target.value
        if target is JobStatus.CANCELLED:
            job.finished_at = utcnow()
        self.add_event(job, "status", "cancellation requested")
        return job

    # -- events -------------------------------------------------------------------------------
    def add_event(self, job: Job, kind: str, message: str = "") -> JobEvent:
        event = JobEvent.snapshot(job, kind, message)
        self.session.add(event)
        self.session.flush()
        return event

    def list_events(self, job_id: str, *, after: int, limit: int) -> Sequence[JobEvent]:
        stmt = self.scoped(select(JobEvent), JobEvent).where(JobEvent.job_id == job_id, JobEvent.id > after)
        return self.session.scalars(stmt.order_by(JobEvent.id).limit(limit)).all()

    # -- artifacts and uploads ----------------------------------------------------------------
    def list_artifacts(self, job_id: str) -> Sequence[Artifact]:
        stmt = self.scoped(select(Artifact), Artifact).where(Artifact.job_id == job_id)
        return self.session.scalars(stmt.order_by(Artifact.name)).all()

    def get_uploaded_model(self, model_id: str) -> UploadedModel | None:
        stmt = self.scoped(select(UploadedModel), UploadedModel).where(UploadedModel.id == model_id)
        return self.session.scalars(stmt).one_or_none()

    def add_uploaded_model(self, **fields: Any) -> UploadedModel:
        model = UploadedModel(tenant_id=self.tenant_id, **fields)
        self.session.add(model)
        self.session.flush()
        return model


class TenantAdmin:
    """Operator actions (CLI): tenants and API keys. Not reachable over HTTP."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def get_or_create_tenant(self, name: str) -> tuple[Tenant, bool]:
        tenant = self.session.scalars(select(Tenant).where(Tenant.name == name)).one_or_none()
        if tenant is not None:
            return tenant, False
        tenant = Tenant(name=name, webhook_secret=new_webhook_secret())
        self.session.add(tenant)
        self.session.flush()
        return tenant, True

    def create_key(self, tenant: Tenant) -> str:
        """Create an API key; the returned plain key is never stored and cannot be shown again."""
        key, prefix, digest = new_api_key()
        self.session.add(ApiKey(tenant_id=tenant.id, prefix=prefix, key_hash=digest))
        self.session.flush()
        return key

    def _active_key(self, prefix: str, tenant_id: str | None = None) -> ApiKey | None:
        stmt = select(ApiKey).where(ApiKey.prefix == prefix)
        if tenant_id is not None:
            stmt = stmt.where(ApiKey.tenant_id == tenant_id)
        api_key = self.session.scalars(stmt.with_for_update()).one_or_none()
        return api_key if api_key is not None and _is_active(api_key) else None

    def revoke_key(self, prefix: str, *, tenant_id: str | None = None) -> bool:
        """Revoke now (also ends the grace period of a rotated key). False when no such active key."""
        api_key = self._active_key(prefix, tenant_id)
        if api_key is None:
            return False
        api_key.revoked_at = utcnow()
        return True

    def rotate_key(self, prefix: str, *, grace_s: int = 0, tenant_id: str | None = None) -> tuple[str, ApiKey] | None:
        """A new key for the tenant of the active key ``prefix``; the old key stays valid ``grace_s`` seconds
        more (``revoked_at`` in the future), then is refused. Returns (new plain key, old key row) or None."""
        old = self._active_key(prefix, tenant_id)
        if old is None:
            return None
        key, new_prefix, digest = new_api_key()
        self.session.add(ApiKey(tenant_id=old.tenant_id, prefix=new_prefix, key_hash=digest))
        old.revoked_at = utcnow() + timedelta(seconds=max(grace_s, 0))
        self.session.flush()
        return key, old

    def authenticate(self, key: str) -> str | None:
        """Tenant id of a valid key (never revoked, or revoked in the future: a rotation's grace), else None."""
        api_key = self.session.scalars(select(ApiKey).where(ApiKey.prefix == key_prefix(key))).one_or_none()
        if api_key is None or not _is_active(api_key) or not key_matches(key, api_key.key_hash):
            return None
        return api_key.tenant_id


def _is_active(api_key: ApiKey) -> bool:
    return api_key.revoked_at is None or api_key.revoked_at > utcnow()
