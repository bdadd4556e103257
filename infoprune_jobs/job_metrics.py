"""Prometheus metrics of job execution, observed where a job runs: in the worker thread of
``infoprune serve`` (served with the API's ``/metrics``) or in Celery worker processes.

Celery's prefork children are separate processes: with ``INFOPRUNE_WORKER_METRICS_PORT`` set, the
worker runs prometheus_client in multiprocess mode (each child writes its samples to files in a
folder; the worker's main process serves them summed, and a recycled child's counts are kept) on its
own ``/metrics`` port. State that is shared by every worker on every host (jobs per status and device
class, live workers) is counted from the database by the API at scrape time (``api/metrics.py``).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)
_SECONDS = (1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400, 28800)

STAGE_SECONDS = Histogram(
    "infoprune_job_stage_seconds",
    "Time an attempt spent in each stage (pipeline stages, downloading, uploading), by the attempt's outcome",
    ["stage", "outcome"],
    buckets=_SECONDS,
    registry=REGISTRY,
)
ATTEMPT_SECONDS = Histogram(
    "infoprune_job_attempt_seconds",
    "Duration of a job attempt, from claim to outcome",
    ["device_class", "outcome"],
    buckets=_SECONDS,
    registry=REGISTRY,
)
QUEUED_SECONDS = Histogram(
    "infoprune_job_queued_seconds",
    "Time a job waited for a worker: since submission, or since its previous attempt's worker was lost",
    ["device_class"],
    buckets=(0.1, 0.5, *_SECONDS),
    registry=REGISTRY,
)
FAILURES = Counter(
    "infoprune_job_failures_total",
    "Failed job attempts by reason: invalid_config, source, device, pipeline, storage, time_limit, internal",
    ["device_class", "reason"],
    registry=REGISTRY,
)
