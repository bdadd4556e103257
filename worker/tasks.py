"""Celery task and worker-process wiring: the task only calls :func:`worker.runner.run_job`."""

from __future__ import annotations

import logging
import threading
from typing import Any

from celery import Celery, signals
from celery.app import app_or_default
from sqlalchemy.exc import OperationalError

from infoprune_jobs import leases
from infoprune_jobs.db import make_engine, make_sessionmaker, transaction
from infoprune_jobs.dispatch import TASK_NAME
from infoprune_jobs.settings import Settings
from infoprune_jobs.storage import make_storage
from worker.runner import RunnerContext, prepare_process, run_job

log = logging.getLogger(__name__)
_ctx: RunnerContext | None = None


def runner_context() -> RunnerContext:
    """Per process (created after fork): engine, sessions, storage."""
    global _ctx
    if _ctx is None:
        settings = Settings()
        _ctx = RunnerContext(settings, make_sessionmaker(make_engine(settings.sqlalchemy_url)), make_storage(settings))
    return _ctx


@signals.worker_process_init.connect
def _fresh_process(**_: Any) -> None:
    global _ctx
    _ctx = None  # never share DB connections across fork
    prepare_process(Settings().torch_threads)


def register(app: Celery) -> None:
    @app.task(name=TASK_NAME, bind=True, acks_late=True, reject_on_worker_lost=True, max_retries=60)
    def run(self: Any, job_id: str) -> str:
        try:
            return run_job(runner_context(), job_id)
        except OperationalError as exc:  # database unreachable: keep the message alive, try again
            log.warning("database unavailable; retrying the task", extra={"job_id": job_id})
            raise self.retry(exc=exc, countdown=10) from exc


class Reaper:
    """Requeues jobs whose worker died (lease expired): runs in each worker's main process."""

    def __init__(self, app: Celery, settings: Settings) -> None:
        self.app = app
        self.settings = settings
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="infoprune-reaper", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def reap_once(self) -> list[str]:
        with transaction(runner_context().sessions) as session:
            requeued = leases.requeue_expired(session, self.settings.max_attempts)
        for job_id, device_class in requeued:
            log.warning("requeueing job of a lost worker", extra={"job_id": job_id})
            self.app.send_task(TASK_NAME, args=[job_id], queue=self.settings.queue_for(device_class))
        return [job_id for job_id, _ in requeued]

    def _loop(self) -> None:
        while not self._stop.wait(self.settings.reaper_interval_s):
            try:
                self.reap_once()
            except Exception:
                log.exception("reaper pass failed")


_reaper: Reaper | None = None


@signals.worker_ready.connect
def _start_reaper(sender: Any = None, **_: Any) -> None:
    global _reaper
    app = sender.app if sender is not None else app_or_default()
    _reaper = Reaper(app, runner_context().settings)
    _reaper.start()


@signals.worker_shutdown.connect
def _stop_reaper(**_: Any) -> None:
    if _reaper is not None:
        _reaper.stop()
