"""The progress callback handed to the core pipeline: writes stage changes and throttled progress
events, and stops the pipeline (by raising) when the job is cancelled or the lease is lost."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from infoprune_jobs import leases
from infoprune_jobs.db import transaction
from worker.heartbeat import Heartbeat


class ProgressWriter:
    def __init__(self, sessions: sessionmaker[Session], heartbeat: Heartbeat, min_interval_s: float = 1.0):
        self._sessions = sessions
        self._hb = heartbeat
        self._min_interval = min_interval_s
        self._stage: str | None = None
        self._last_write = 0.0

    def __call__(self, event: Any) -> None:
        """Receives ``infoprune_core.progress.ProgressEvent``."""
        self._hb.check()
        now = time.monotonic()
        if event.stage != self._stage:
            self.write(event.stage, event.overall * 0.95, event.message or f"stage {event.stage}", "stage")
        elif now - self._last_write >= self._min_interval:
            self.write(event.stage, event.overall * 0.95, event.message, "progress")

    def write(self, stage: str, progress: float, message: str, kind: str) -> None:
        with transaction(self._sessions) as session:
            status = leases.record_progress(
                session, self._hb.job_id, self._hb.owner, stage, round(progress, 4), message[:2000], kind
            )
        self._stage, self._last_write = stage, time.monotonic()
        self._hb.observe(status)
        self._hb.check()
