"""JSON logs carry the job id and never a secret."""

from __future__ import annotations

import json
import logging

from infoprune_jobs.logs import JsonFormatter, job_context
from infoprune_jobs.security import new_api_key, new_webhook_secret


def _format(msg: str, *args: object, **extra: object) -> dict[str, object]:
    record = logging.LogRecord("t", logging.INFO, __file__, 1, msg, args, None)
    record.__dict__.update(extra)
    return json.loads(JsonFormatter().format(record))  # type: ignore[no-any-return]


def test_job_id_from_context_and_secrets_redacted() -> None:
    key, _, _ = new_api_key()
    secret = new_webhook_secret()
    with job_context("abc123"):
        out = _format("auth %s with Bearer %s and %s", key, key, secret, tenant_id="t1")
    assert out["job_id"] == "abc123" and out["tenant_id"] == "t1"
    assert key not in str(out) and secret not in str(out) and "***" in str(out["msg"])
    assert "job_id" not in _format("outside a job")
