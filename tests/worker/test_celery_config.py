"""Celery settings fit for long GPU jobs."""

from __future__ import annotations

from pathlib import Path

from infoprune_jobs.dispatch import TASK_NAME
from infoprune_jobs.settings import Settings
from worker.celery_app import make_celery
from worker.tasks import register


def test_long_job_settings(service_env: Path) -> None:
    settings = Settings(
        broker_url="redis://127.0.0.1:6379/13", job_time_limit_s=7200, device_classes=["cpu", "gpu-a100"]
    )
    app = make_celery(settings)
    register(app)
    conf = app.conf
    assert conf.task_acks_late and conf.task_reject_on_worker_lost
    assert conf.worker_prefetch_multiplier == 1 and conf.worker_concurrency == 1
    assert conf.broker_transport_options["visibility_timeout"] > conf.task_time_limit == 7200
    assert conf.task_soft_time_limit < conf.task_time_limit
    assert {q.name for q in conf.task_queues} == {"infoprune.cpu", "infoprune.gpu-a100"}
    task = app.tasks[TASK_NAME]
    assert task.acks_late and task.reject_on_worker_lost
