"""In-process worker for embedded mode: a thread drains the local dispatch queue through the same
``run_job`` as the Celery task. Every ``reaper_interval_s`` it announces itself (it runs every device
class), requeues jobs whose lease expired (e.g. after a restart) and removes stale work folders."""

from __future__ import annotations

import logging
import queue
import threading

from sqlalchemy import select

from infoprune_jobs import leases, workers
from infoprune_jobs.db import transaction
from infoprune_jobs.dispatch import LocalDispatcher
from infoprune_jobs.models import Job
from infoprune_jobs.states import JobStatus
from worker import workdirs
from worker.runner import RunnerContext, prepare_process, run_job, worker_id

log = logging.getLogger(__name__)


class EmbeddedWorker:
    def __init__(self, ctx: RunnerContext, dispatcher: LocalDispatcher) -> None:
        self.ctx = ctx
        self.dispatcher = dispatcher
        self.owner = worker_id()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="infoprune-embedded-worker", daemon=True)

    def start(self) -> None:
        self._announce()
        with transaction(self.ctx.sessions) as session:
            leases.requeue_expired(session, self.ctx.settings.max_attempts)
            workdirs.sweep(session, self.ctx.settings.work_root)  # of attempts killed with the last server
            pending = session.scalars(select(Job.id).where(Job.status == JobStatus.QUEUED.value).order_by(Job.id))
            for job_id in pending.all():
                self.dispatcher.dispatch(job_id, "")
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self.dispatcher.queue.put(None)
        self._thread.join(timeout)
        with transaction(self.ctx.sessions) as session:
            workers.leave(session, self.owner)

    def _announce(self) -> None:
        settings = self.ctx.settings
        with transaction(self.ctx.sessions) as session:
            workers.announce(session, self.owner, settings.device_classes, settings.reaper_interval_s)

    def _configure_torch(self) -> None:
        try:
            prepare_process(self.ctx.settings.torch_threads)
        except ImportError:  # the pipeline will say so when a job runs
            log.exception("embedded worker: torch/transformers unavailable")

    def _run(self) -> None:
        self._configure_torch()
        while not self._stop.is_set():
            try:
                job_id = self.dispatcher.queue.get(timeout=self.ctx.settings.reaper_interval_s)
            except queue.Empty:
                self._reap()
                continue
            if job_id is None:
                break
            try:
                run_job(self.ctx, job_id, self.owner)
            except Exception:
                log.exception("embedded worker: job run failed", extra={"job_id": job_id})

    def _reap(self) -> None:
        try:
            self._announce()
            with transaction(self.ctx.sessions) as session:
                requeued = leases.requeue_expired(session, self.ctx.settings.max_attempts)
                workdirs.sweep(session, self.ctx.settings.work_root)
            for job_id, device_class in requeued:
                self.dispatcher.dispatch(job_id, device_class)
        except Exception:
            log.exception("embedded worker: reaper failed")
