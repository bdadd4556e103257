"""Prometheus metrics of the API process, and the job state every worker shares, counted from the
database at scrape time (grouped counts on indexed columns): jobs per status and device class, live
workers per class, the age of the oldest queued job. Job execution metrics (stage durations, time
queued, failures by reason) are observed where jobs run (``infoprune_jobs.job_metrics``): served here
in embedded mode, by each Celery worker's own metrics port otherwise."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from fastapi import Request, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from infoprune_jobs import job_metrics, workers
from infoprune_jobs.models import Job, utcnow
from infoprune_jobs.settings import Settings
from infoprune_jobs.states import JobStatus

REGISTRY = CollectorRegistry(auto_describe=True)
REQUESTS = Counter("infoprune_http_requests_total", "HTTP requests", ["method", "route", "status"], registry=REGISTRY)
LATENCY = Histogram("infoprune_http_request_seconds", "HTTP request latency", ["method", "route"], registry=REGISTRY)
JOBS_SUBMITTED = Counter("infoprune_jobs_submitted_total", "Jobs accepted", ["device_class"], registry=REGISTRY)
JOBS_BY_STATUS = Gauge("infoprune_jobs", "Jobs in the database by status", ["status"], registry=REGISTRY)
JOBS_BY_CLASS = Gauge(
    "infoprune_jobs_by_device_class",
    "Queued, running and cancelling jobs per device class (all workers)",
    ["device_class", "status"],
    registry=REGISTRY,
)
LIVE_WORKERS = Gauge(
    "infoprune_workers", "Live workers consuming each device class's queue", ["device_class"], registry=REGISTRY
)
OLDEST_QUEUED = Gauge(
    "infoprune_oldest_queued_job_seconds",
    "Age of the oldest queued job per device class (0: none queued)",
    ["device_class"],
    registry=REGISTRY,
)
_ACTIVE = (JobStatus.QUEUED.value, JobStatus.RUNNING.value, JobStatus.CANCELLING.value)


async def middleware(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
    start = time.perf_counter()
    status = 500
    try:
        response = await call_next(request)
        status = response.status_code
        return response
    finally:
        route = request.scope.get("route")
        template = getattr(route, "path", "unmatched")
        REQUESTS.labels(request.method, template, str(status)).inc()
        LATENCY.labels(request.method, template).observe(time.perf_counter() - start)


def _count_from_database(session: Session, settings: Settings) -> None:
    counts = dict(session.execute(select(Job.status, func.count()).group_by(Job.status)).all())
    for job_status in JobStatus:
        JOBS_BY_STATUS.labels(job_status.value).set(counts.get(job_status.value, 0))
    by_class = select(Job.device_class, Job.status, func.count(), func.min(Job.created_at))
    rows = session.execute(by_class.where(Job.status.in_(_ACTIVE)).group_by(Job.device_class, Job.status)).all()
    active = {(device_class, status): (count, oldest) for device_class, status, count, oldest in rows}
    live = workers.live_workers(session)
    now = utcnow()
    for device_class in sorted({*settings.device_classes, *(c for c, _ in active)}):
        for status in _ACTIVE:
            JOBS_BY_CLASS.labels(device_class, status).set(active.get((device_class, status), (0, None))[0])
        LIVE_WORKERS.labels(device_class).set(live.get(device_class, 0))
        oldest = active.get((device_class, JobStatus.QUEUED.value), (0, None))[1]
        OLDEST_QUEUED.labels(device_class).set((now - oldest).total_seconds() if oldest is not None else 0)


def render(sessions: sessionmaker[Session], settings: Settings) -> Response:
    with sessions() as session:
        _count_from_database(session, settings)
    body = generate_latest(REGISTRY)
    if settings.embedded:  # jobs run in this process
        body += generate_latest(job_metrics.REGISTRY)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
