"""Work folders of job attempts: ``<work_dir>/<job id>-<attempt>``.

A worker killed mid-job (SIGKILL, OOM) cannot clean up after itself. The next attempt of the job on
this host removes the folders of its earlier attempts, and every reaper pass removes the folders of
attempts that no longer run (the job finished, was requeued, or moved to another attempt).
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from infoprune_jobs.models import Job
from infoprune_jobs.states import ACTIVE

_NAME = re.compile(r"^([0-9a-f]{32})-([0-9]+)$")


def fresh(work_dir: Path, job_id: str, attempt: int) -> Path:
    """An empty folder for this attempt; earlier attempts' folders of the job are removed."""
    for stale in work_dir.glob(f"{job_id}-*"):
        shutil.rmtree(stale, ignore_errors=True)
    folder = work_dir / f"{job_id}-{attempt}"
    folder.mkdir(parents=True)
    return folder


def sweep(session: Session, work_dir: Path) -> list[str]:
    """Remove the folders of attempts that are not running; returns their names."""
    if not work_dir.is_dir():
        return []
    found = [(m.group(1), int(m.group(2)), path) for path in work_dir.iterdir() if (m := _NAME.match(path.name))]
    if not found:
        return []
    active = select(Job.id, Job.attempts).where(
        Job.id.in_({job_id for job_id, _, _ in found}), Job.status.in_([s.value for s in ACTIVE])
    )
    running = {job_id: attempts for job_id, attempts in session.execute(active)}
    removed = []
    for job_id, attempt, path in found:
        if running.get(job_id) != attempt:
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path.name)
    return removed
