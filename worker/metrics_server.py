"""A Celery worker's job metrics (``infoprune_jobs.job_metrics``) on its own port.

The prefork pool runs jobs in child processes, so prometheus_client runs in multiprocess mode: every
process writes its samples to files in one folder, fresh at each worker start, and the main process
serves their sum (counts of recycled children included). The folder must be named before
prometheus_client is first imported: :func:`prepare` runs first thing in ``worker.main``.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from infoprune_jobs.settings import Settings

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def prepare(settings: Settings) -> Path | None:
    """Point prometheus_client at a fresh samples folder (when the worker serves metrics)."""
    if settings.worker_metrics_port is None:
        return None
    folder = settings.data_dir / "metrics" / f"worker-{settings.worker_metrics_port}"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    os.environ[MULTIPROC_ENV] = str(folder)
    return folder


def serve(port: int) -> None:
    """Serve the summed samples of this worker's processes on ``port`` (all interfaces)."""
    from prometheus_client import CollectorRegistry, multiprocess, start_http_server

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    start_http_server(port, registry=registry)
