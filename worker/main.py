"""Entry point of the Celery worker: ``celery -A worker.main worker`` or ``infoprune worker``."""

from __future__ import annotations

from infoprune_jobs.logs import configure_logging
from infoprune_jobs.settings import Settings
from worker import metrics_server

settings = Settings()
configure_logging(settings.log_level)
metrics_server.prepare(settings)  # before the job metrics (prometheus_client) are imported

from worker.celery_app import make_celery  # noqa: E402
from worker.runner import prepare_process  # noqa: E402
from worker.tasks import register  # noqa: E402

# torch and transformers are loaded here, before the pool forks (without touching CUDA): a child that
# imported them itself would take seconds before claiming its first job
prepare_process(settings.torch_threads)
app = make_celery(settings)
register(app)
