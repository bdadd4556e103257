"""The progress callback handed to the core pipeline: writes stage changes and throttled progress
events, and stops the pipeline (by raising) when the job is cancelled or the lease is lost."""

from __future__ import annotations

import logging
import time
from typing import Any

from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from infoprune_jobs import leases
from infoprune_jobs.db import transaction
from worker.heartbeat import Heartbeat

log = logging.getLogger(__name__)


class ProgressWriter:
    def __init__(self, sessions: sessionmaker[Session], heartbeat: Heartbeat, min_interval_s: float = 1.0):
        self._sessions = sessions
        self._hb = heartbeat
        self._min_interval = min_interval_s
        self._stage: str | None = None
        self._last_write = 0.0
        self._db_retry_at = 0.0

    def __call__(self, event: Any) -> None:
        """Receives ``infoprune_core.progress.ProgressEvent``."""
        self._hb.check()
        now = time.monotonic()
        if now < self._db_retry_at:
            return
        if event.stage != self._stage:
            self.write(event.stage, event.overall * 0.95, event.message or f"stage {event.stage}", "stage")
        elif now - self._last_write >= self._min_interval:
            self.write(event.stage, event.overall * 0.95, event.message, "progress")

    def write(self, stage: str, progress: float, message: str, kind: str) -> None:
        try:
            with transaction(self._sessions) as session:
                status = leases.record_progress(
                    session, self._hb.job_id, self._hb.owner, stage, round(progress, 4), message[:2000], kind
                )
        except OperationalError:
            # The database is unreachable (restart, failover): keep computing, try again a tick after
            # min_interval (the pending stage is written then); the lease has slack, and the outcome is
            # recorded with retries.
            log.warning("progress not recorded: database unreachable", extra={"job_id": self._hb.job_id})
            self._db_retry_at = time.monotonic() + self._min_interval
            self._hb.check()
            return
        self._stage, self._last_write = stage, time.monotonic()
        self._hb.observe(status)
        self._hb.check()
