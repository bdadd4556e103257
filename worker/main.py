"""Entry point of the Celery worker: ``celery -A worker.main worker`` or ``infoprune worker``."""

from __future__ import annotations

from infoprune_jobs.logs import configure_logging
from infoprune_jobs.settings import Settings
from worker.celery_app import make_celery
from worker.tasks import register

settings = Settings()
configure_logging(settings.log_level)
app = make_celery(settings)
register(app)
