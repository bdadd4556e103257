"""The Celery application, configured for long GPU jobs.

- late acks + reject on worker loss: a message is acked only after the job ran; a crashed worker's
  message is redelivered, and the DB lease makes the redelivery harmless;
- prefetch 1 and concurrency 1: one job per GPU, no job waiting behind another on a busy worker;
- the broker's visibility timeout exceeds the task time limit, so a long job is never redelivered
  while it still runs; a dead worker's job is picked up sooner by the lease reaper;
- one queue per device class (``infoprune.<class>``);
- a job past ``job_time_limit_s`` is stopped by the soft time limit, shortly before the hard one, so it
  fails with a clear reason and the worker process lives on to take the next job.
"""

from __future__ import annotations

from celery import Celery
from kombu import Queue

from infoprune_jobs.dispatch import TASK_NAME, transport_options
from infoprune_jobs.settings import Settings


def soft_time_limit(limit_s: int) -> int:
    """The soft limit leaves the job a grace period (a tenth of the limit, 2 to 60 s) to stop cleanly."""
    return limit_s - min(60, max(2, limit_s // 10))


def make_celery(settings: Settings) -> Celery:
    app = Celery("infoprune", broker=settings.broker_url)
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_acks_on_failure_or_timeout=True,
        worker_prefetch_multiplier=1,
        worker_concurrency=1,
        worker_max_tasks_per_child=settings.worker_max_tasks_per_child,
        task_time_limit=settings.job_time_limit_s,
        task_soft_time_limit=soft_time_limit(settings.job_time_limit_s),
        # the job row, not the broker connection, says whether a job runs: a broker restart must not
        # kill running jobs (Celery 6 would cancel them by default)
        worker_cancel_long_running_tasks_on_connection_loss=False,
        broker_transport_options=transport_options(settings),
        broker_connection_retry_on_startup=True,
        task_ignore_result=True,
        result_backend=None,
        task_serializer="json",
        accept_content=["json"],
        task_queues=[Queue(settings.queue_for(c)) for c in settings.device_classes],
        task_default_queue=settings.queue_for(settings.default_device_class),
        task_routes={TASK_NAME: {"queue": settings.queue_for(settings.default_device_class)}},
        worker_hijack_root_logger=False,
        worker_send_task_events=True,
        task_send_sent_event=True,
    )
    return app
