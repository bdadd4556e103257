"""Keeps a job's lease alive and notices cancellation or a lost lease between progress ticks."""

from __future__ import annotations

import logging
import threading

from sqlalchemy.orm import Session, sessionmaker

from infoprune_jobs import leases
from infoprune_jobs.db import transaction
from infoprune_jobs.states import JobStatus

log = logging.getLogger(__name__)


class JobCancelled(Exception):
    """Raised from the progress callback to stop a job whose cancellation was requested."""


class LeaseLost(Exception):
    """Raised when another worker owns the job now; this worker must write nothing more."""


class Heartbeat:
    def __init__(self, sessions: sessionmaker[Session], job_id: str, owner: str, ttl_s: float) -> None:
        self._sessions = sessions
        self.job_id = job_id
        self.owner = owner
        self.ttl_s = ttl_s
        self.cancelled = threading.Event()
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"lease-{job_id[:8]}", daemon=True)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def observe(self, status: JobStatus | None) -> None:
        if status is None:
            self.lost.set()
        elif status is JobStatus.CANCELLING:
            self.cancelled.set()

    def check(self) -> None:
        """Raise LeaseLost / JobCancelled when due (called from the progress callback)."""
        if self.lost.is_set():
            raise LeaseLost(self.job_id)
        if self.cancelled.is_set():
            raise JobCancelled(self.job_id)

    def beat(self) -> None:
        with transaction(self._sessions) as session:
            self.observe(leases.renew(session, self.job_id, self.owner, self.ttl_s))

    def _run(self) -> None:
        while not self._stop.wait(self.ttl_s / 3):
            try:
                self.beat()
            except Exception:  # a DB hiccup must not kill the job; the lease has slack
                log.warning("lease renewal failed", exc_info=True, extra={"job_id": self.job_id})
