"""How the API hands a job id to the workers: Celery over the broker, or an in-process queue.

The API only ever calls :meth:`Dispatcher.dispatch`; it never imports the worker package.
"""

from __future__ import annotations

import queue
from typing import Any, Protocol

from infoprune_jobs.settings import Settings

TASK_NAME = "infoprune.run_job"


class Dispatcher(Protocol):
    def dispatch(self, job_id: str, device_class: str) -> None: ...

    def check(self) -> None:
        """Raise when jobs cannot be dispatched (readiness)."""
        ...


class LocalDispatcher:
    """Embedded mode: job ids go on a queue that the in-process worker thread drains."""

    def __init__(self) -> None:
        self.queue: queue.Queue[str | None] = queue.Queue()

    def dispatch(self, job_id: str, device_class: str) -> None:
        self.queue.put(job_id)

    def check(self) -> None:
        return None


class CeleryDispatcher:
    """Sends the task by name to the device class's queue; needs only the broker, not the worker code."""

    def __init__(self, settings: Settings, app: Any | None = None) -> None:
        from celery import Celery

        self._settings = settings
        self._app = app or Celery("infoprune-api", broker=settings.broker_url)
        self._app.conf.broker_connection_retry_on_startup = True
        self._app.conf.broker_transport_options = transport_options(settings)
        self._app.conf.broker_connection_timeout = 3
        # fail fast (the API answers 503) instead of holding the request while the broker is down
        self._app.conf.task_publish_retry_policy = {
            "max_retries": 2,
            "interval_start": 0,
            "interval_step": 0.5,
            "interval_max": 1,
        }

    def dispatch(self, job_id: str, device_class: str) -> None:
        self._app.send_task(TASK_NAME, args=[job_id], queue=self._settings.queue_for(device_class))

    def check(self) -> None:
        with self._app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=2)


def transport_options(settings: Settings) -> dict[str, Any]:
    """Redelivery of unacked messages only after the longest job could have ended."""
    return {"visibility_timeout": settings.job_time_limit_s + 3600}
