"""InfoPrune job domain, shared by the API and the worker: settings, ORM models, the job state
machine, tenant-scoped repositories, DB leases, artifact storage and the service CLI commands."""

from infoprune_jobs.settings import Settings
from infoprune_jobs.states import TERMINAL, JobStatus

__all__ = ["TERMINAL", "JobStatus", "Settings"]
