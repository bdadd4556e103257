"""The progress callback handed to the core pipeline: writes stage changes and throttled progress
events, and stops the pipeline (by raising) when the job is cancelled or the lease is lost.

Progress never goes back over the whole job. The pipeline reports a fraction within its current stage,
and stages repeat (``evaluating`` runs several times) in an order this module does not assume: each new
run of a stage gets a share of what is left of the job's progress (an equal share while stages remain
that have not run yet, half of the rest for a repeat), and a fraction lower than one already seen in the
same run of a stage is ignored.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Collection
from typing import Any

from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from infoprune_jobs import leases
from infoprune_jobs.db import transaction
from worker.heartbeat import Heartbeat
from worker.redact import PathRedactor

log = logging.getLogger(__name__)
PIPELINE_END = 0.95  # the rest is uploading and recording the outcome


class MonotonicProgress:
    """Job-wide progress in [start, end] from (stage, fraction-within-stage) reports."""

    def __init__(self, stages: Collection[str], start: float = 0.0, end: float = PIPELINE_END) -> None:
        self._unseen = set(stages)
        self._end = end
        self.value = min(max(start, 0.0), end)
        self._stage: str | None = None
        self._floor = self._span = 0.0

    def update(self, stage: str, fraction: float) -> float:
        if stage != self._stage:
            self._stage, self._floor = stage, self.value
            self._unseen.discard(stage)
            self._span = (self._end - self._floor) / (len(self._unseen) + 2)
        self.value = max(self.value, self._floor + self._span * min(max(fraction, 0.0), 1.0))
        return self.value

    def raise_to(self, value: float) -> float:
        self.value = max(self.value, value)
        return self.value


class ProgressWriter:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        heartbeat: Heartbeat,
        redactor: PathRedactor,
        progress: MonotonicProgress,
        min_interval_s: float = 1.0,
    ) -> None:
        self._sessions = sessions
        self._hb = heartbeat
        self._redact = redactor
        self.progress = progress
        self._min_interval = min_interval_s
        self._stage: str | None = None
        self._last_write = 0.0
        self._db_retry_at = 0.0
        self.stage_seconds: dict[str, float] = {}
        self._timed: tuple[str, float] | None = None

    def __call__(self, event: Any) -> None:
        """Receives ``infoprune_core.progress.ProgressEvent``."""
        self._hb.check()
        self._time(event.stage)
        value = self.progress.update(event.stage, event.fraction)
        now = time.monotonic()
        if now < self._db_retry_at:
            return
        if event.stage != self._stage:
            self.write(event.stage, value, event.message or f"stage {event.stage}", "stage")
        elif now - self._last_write >= self._min_interval:
            self.write(event.stage, value, event.message, "progress")

    def stage(self, stage: str, message: str, progress: float | None = None) -> None:
        """A stage of the service's own (downloading, uploading), at ``progress`` when given."""
        self._time(stage)
        value = self.progress.update(stage, 0.0) if progress is None else self.progress.raise_to(progress)
        self.write(stage, value, message, "stage")

    def finish_timing(self) -> dict[str, float]:
        """Seconds per stage of this attempt (the current stage ends now)."""
        self._time(None)
        return self.stage_seconds

    def _time(self, stage: str | None) -> None:
        now = time.monotonic()
        if self._timed is not None:
            name, since = self._timed
            if name == stage:
                return
            self.stage_seconds[name] = self.stage_seconds.get(name, 0.0) + now - since
        self._timed = None if stage is None else (stage, now)

    def write(self, stage: str, progress: float, message: str, kind: str) -> None:
        message = self._redact.text(message)[:2000]
        try:
            with transaction(self._sessions) as session:
                status = leases.record_progress(
                    session, self._hb.job_id, self._hb.owner, stage, round(progress, 4), message, kind
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
