"""InfoPrune worker: turns a job row into a call of the core pipeline (Celery or in-process)."""
