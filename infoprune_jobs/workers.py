"""Live workers and the device classes they consume, kept in the database: every worker refreshes its
entry from its reaper loop, so the API can tell (``/readyz``, a new job's first event) when no worker
consumes a device class's queue and its jobs would wait for ever."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from infoprune_jobs.models import Worker, utcnow

FORGET_AFTER = timedelta(days=1)  # entries of workers that died this long ago are deleted


def announce(session: Session, name: str, device_classes: Iterable[str], every_s: float) -> None:
    """Say that worker ``name`` consumes ``device_classes``; it says so again every ``every_s`` seconds,
    so the entry lasts three periods (a missed beat or two is no death)."""
    now = utcnow()
    classes, expires_at = list(device_classes), now + timedelta(seconds=3 * every_s + 5)
    worker = session.get(Worker, name)
    if worker is None:
        session.add(Worker(name=name, device_classes=classes, started_at=now, expires_at=expires_at))
    else:
        worker.device_classes, worker.expires_at = classes, expires_at
    session.execute(delete(Worker).where(Worker.expires_at < now - FORGET_AFTER))


def leave(session: Session, name: str) -> None:
    """A worker that shuts down cleanly withdraws at once."""
    session.execute(delete(Worker).where(Worker.name == name))


def live_workers(session: Session) -> dict[str, int]:
    """Number of live workers per device class they consume."""
    counts: dict[str, int] = {}
    for classes in session.scalars(select(Worker.device_classes).where(Worker.expires_at > utcnow())):
        for device_class in classes:
            counts[device_class] = counts.get(device_class, 0) + 1
    return counts
