"""Prometheus metrics of the API process."""

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

from infoprune_jobs.models import Job

REGISTRY = CollectorRegistry(auto_describe=True)
REQUESTS = Counter("infoprune_http_requests_total", "HTTP requests", ["method", "route", "status"], registry=REGISTRY)
LATENCY = Histogram("infoprune_http_request_seconds", "HTTP request latency", ["method", "route"], registry=REGISTRY)
JOBS_SUBMITTED = Counter("infoprune_jobs_submitted_total", "Jobs accepted", ["device_class"], registry=REGISTRY)
JOBS_BY_STATUS = Gauge("infoprune_jobs", "Jobs in the database by status", ["status"], registry=REGISTRY)


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


def render(sessions: Callable[[], object]) -> Response:
    with sessions() as session:  # type: ignore[attr-defined]
        counts = dict(session.execute(select(Job.status, func.count()).group_by(Job.status)).all())
    for status in ("queued", "running", "cancelling", "succeeded", "failed", "cancelled"):
        JOBS_BY_STATUS.labels(status).set(counts.get(status, 0))
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)
