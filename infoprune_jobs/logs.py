"""Structured JSON logs. The current job id travels in a context variable and lands in every record."""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime

current_job_id: ContextVar[str | None] = ContextVar("current_job_id", default=None)

# Never log something that looks like a credential, even by accident.
_SECRET = re.compile(r"(ipk_[A-Za-z0-9_-]{8})[A-Za-z0-9_-]+|(whsec_)[A-Za-z0-9+/=]+|(Bearer\s+)\S+")


def redact(text: str) -> str:
    return _SECRET.sub(lambda m: (m.group(1) or m.group(2) or m.group(3)) + "***", text)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": redact(record.getMessage()),
        }
        job_id = getattr(record, "job_id", None) or current_job_id.get()
        if job_id:
            payload["job_id"] = job_id
        for field in (
            "tenant_id",
            "request_id",
            "status",
            "stage",
            "method",
            "path",
            "status_code",
            "duration_ms",
            "attempt",
            "worker",
        ):
            if (value := getattr(record, field, None)) is not None:
                payload[field] = value
        if record.exc_info:
            payload["exc"] = redact(self.formatException(record.exc_info))
        return json.dumps(payload, default=str)


def configure_logging(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("uvicorn.access",):
        logging.getLogger(noisy).handlers[:] = []
        logging.getLogger(noisy).propagate = True


@contextmanager
def job_context(job_id: str) -> Iterator[None]:
    token = current_job_id.set(job_id)
    try:
        yield
    finally:
        current_job_id.reset(token)
