"""Celery task and worker-process wiring: the task only calls :func:`worker.runner.run_job`."""

from __future__ import annotations

import logging
import threading
from typing import Any

from celery import Celery, signals
from celery.app import app_or_default
from celery.exceptions import TimeLimitExceeded
from kombu.exceptions import ChannelError
from sqlalchemy.exc import OperationalError

from infoprune_jobs import leases, workers
from infoprune_jobs.db import make_engine, make_sessionmaker, transaction
from infoprune_jobs.dispatch import TASK_NAME
from infoprune_jobs.settings import Settings
from infoprune_jobs.states import JobStatus
from infoprune_jobs.storage import make_storage
from worker import metrics_server, workdirs
from worker.runner import RunnerContext, prepare_process, run_job, worker_id

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
            # the task id in the lease owner lets the main process find the job at the hard time limit
            return run_job(runner_context(), job_id, f"{worker_id()}:{self.request.id}"[:128])
        except OperationalError as exc:  # database unreachable: keep the message alive, try again
            log.warning("database unavailable; retrying the task", extra={"job_id": job_id})
            raise self.retry(exc=exc, countdown=10) from exc


@signals.task_failure.connect
def _hard_time_limit(
    sender: Any = None, task_id: str | None = None, exception: BaseException | None = None, **kwargs: Any
) -> None:
    """A job that ignored the soft time limit (stuck in a long native call, a hung connection) is
    killed by the pool at the hard one, in the worker's main process: record why, so the job fails
    with that reason instead of being requeued as if its worker had died. In a thread: the dying
    process may still hold the job's row, and the main process must not wait for it."""
    args = kwargs.get("args") or []
    if getattr(sender, "name", None) != TASK_NAME or not isinstance(exception, TimeLimitExceeded) or not args:
        return
    threading.Thread(target=_fail_timed_out, args=(args[0], task_id), name="infoprune-time-limit", daemon=True).start()


def _fail_timed_out(job_id: str, task_id: str) -> None:
    ctx = runner_context()
    error = f"the job exceeded its time limit ({ctx.settings.job_time_limit_s}s)"
    try:
        with transaction(ctx.sessions) as session:
            job = leases.get_job(session, job_id)
            owner = job.lease_owner if job is not None else None
            # only while the killed task holds it (Celery may signal the failure twice; one records it)
            if owner is None or not owner.endswith(f":{task_id}"):
                return
            if leases.finish(session, job_id, owner, JobStatus.FAILED, error=error):
                log.warning("job killed at the hard time limit", extra={"job_id": job_id})
    except Exception:
        log.exception("could not record the hard time limit; the lease reaper will handle the job")


class Reaper:
    """Runs in each worker's main process, once at start and then every ``reaper_interval_s``:

    - the worker announces the device classes it consumes (:func:`workers.announce`), for ``/readyz``;
    - jobs whose worker died (lease expired) are requeued and dispatched again, or failed once they
      lost ``max_attempts`` workers (:func:`leases.requeue_expired`);
    - jobs queued for longer than ``queued_redispatch_after_s`` while their broker queue holds fewer
      messages than there are queued jobs (the broker lost messages, e.g. Redis restarted without its
      data) are dispatched again (:func:`leases.take_stale_queued`);
    - work folders of attempts that no longer run (a killed worker's) are removed (:func:`workdirs.sweep`).
    """

    def __init__(self, app: Celery, settings: Settings, name: str, device_classes: list[str]) -> None:
        self.app = app
        self.settings = settings
        self.name = name
        self.device_classes = device_classes
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="infoprune-reaper", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        try:
            with transaction(runner_context().sessions) as session:
                workers.leave(session, self.name)
        except Exception:
            log.warning("could not withdraw the worker's announcement; it expires by itself", exc_info=True)

    def _send(self, job_id: str, device_class: str) -> None:
        self.app.send_task(TASK_NAME, args=[job_id], queue=self.settings.queue_for(device_class))

    def reap_once(self) -> list[str]:
        """Requeue the jobs of lost workers; returns their ids."""
        with transaction(runner_context().sessions) as session:
            requeued = leases.requeue_expired(session, self.settings.max_attempts)
        for job_id, device_class in requeued:
            log.warning("requeueing job of a lost worker", extra={"job_id": job_id})
            self._send(job_id, device_class)
        return [job_id for job_id, _ in requeued]

    def queue_depth(self, queue: str) -> int:
        """Messages waiting in a broker queue (0 when the broker does not know the queue)."""
        with self.app.connection_for_read() as conn:
            try:
                return int(conn.default_channel.queue_declare(queue=queue, passive=True).message_count)
            except ChannelError:
                return 0

    def redispatch_lost(self) -> list[str]:
        """Send again the queued jobs whose messages the broker lost; returns their ids."""
        sessions = runner_context().sessions
        with transaction(sessions) as session:
            counts = leases.queued_counts(session)
        sent: list[str] = []
        for device_class, queued in counts.items():
            missing = queued - self.queue_depth(self.settings.queue_for(device_class))
            if missing <= 0:
                continue
            with transaction(sessions) as session:
                stale = leases.take_stale_queued(
                    session, device_class, self.settings.queued_redispatch_after_s, missing
                )
            for job_id in stale:
                log.warning("dispatching a queued job again (broker message lost?)", extra={"job_id": job_id})
                self._send(job_id, device_class)
            sent.extend(stale)
        return sent

    def announce(self) -> None:
        with transaction(runner_context().sessions) as session:
            workers.announce(session, self.name, self.device_classes, self.settings.reaper_interval_s)

    def sweep_work_folders(self) -> list[str]:
        with transaction(runner_context().sessions) as session:
            return workdirs.sweep(session, self.settings.work_root)

    def _loop(self) -> None:
        steps = (
            ("announce", self.announce),
            ("lost workers", self.reap_once),
            ("lost messages", self.redispatch_lost),
            ("work folders", self.sweep_work_folders),
        )
        while True:
            for name, step in steps:
                try:
                    step()
                except Exception:
                    log.exception("reaper pass failed (%s)", name)
            if self._stop.wait(self.settings.reaper_interval_s):
                return


_reaper: Reaper | None = None


@signals.worker_ready.connect
def _start_reaper(sender: Any = None, **_: Any) -> None:
    """``sender`` is the worker's consumer: its node name and the queues it consumes."""
    global _reaper
    app = sender.app if sender is not None else app_or_default()
    settings = runner_context().settings
    queues = set(app.amqp.queues.consume_from)
    classes = [c for c in settings.device_classes if settings.queue_for(c) in queues]
    _reaper = Reaper(app, settings, getattr(sender, "hostname", None) or worker_id(), classes)
    _reaper.start()
    if settings.worker_metrics_port is not None:
        metrics_server.serve(settings.worker_metrics_port)


@signals.worker_shutdown.connect
def _stop_reaper(**_: Any) -> None:
    if _reaper is not None:
        _reaper.stop()
