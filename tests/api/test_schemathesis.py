"""Property-based fuzzing of every operation of the served OpenAPI schema (schemathesis), on SQLite and
PostgreSQL, with a valid API key and without one: never a 5xx, every error is problem+json, and every
response (status, content type, body) conforms to the schema.

Bounded: a fixed number of examples per operation and mode, derandomized so a run is reproducible.
"""

from __future__ import annotations

import contextlib
from typing import Any

import pytest

schemathesis = pytest.importorskip("schemathesis")

from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402
from hypothesis.errors import Unsatisfiable  # noqa: E402
from schemathesis import GenerationMode  # noqa: E402
from schemathesis.specs.openapi.checks import (  # noqa: E402
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from infoprune_jobs.db import transaction  # noqa: E402
from infoprune_jobs.repository import TenantAdmin  # noqa: E402
from tests.api.conftest import Api  # noqa: E402

CHECKS = [status_code_conformance, content_type_conformance, response_headers_conformance, response_schema_conformance]
EXAMPLES = {"key": 12, "none": 4}  # per operation and generation mode


@pytest.fixture
def api_overrides() -> dict[str, Any]:
    return {"rate_limit_per_s": 0, "max_active_jobs_per_tenant": 0}  # fuzz the handlers, not the limiter


def _fresh_key(api: Api) -> str:
    with transaction(api.ctx.sessions) as s:
        admin = TenantAdmin(s)
        return admin.create_key(admin.get_or_create_tenant("fuzz")[0])


def _problems_of(case: Any, response: Any) -> list[str]:
    found = []
    if response.status_code >= 500:
        found.append(f"{response.status_code}: {response.text[:200]}")
    content_type = response.headers.get("content-type", [""])[0]
    if response.status_code >= 400 and content_type != "application/problem+json":
        found.append(f"{response.status_code} with content type {content_type!r}")
    try:
        case.validate_response(response, checks=CHECKS)
    except Exception as exc:  # a conformance failure: keep its first lines
        found.append(" ".join(str(exc).split())[:300])
    return found


def _fuzz(api: Api, operation: Any, auth: str, mode: GenerationMode, key: str, failures: dict[str, str]) -> int:
    """Run one operation in one mode; record what is wrong instead of stopping. Returns the calls made."""
    calls = 0

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=EXAMPLES[auth],
        deadline=None,
        derandomize=True,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def run(case: Any) -> None:
        nonlocal calls
        headers = dict(case.headers or {})
        headers.pop("Authorization", None)
        if auth == "key":  # the key endpoints may rotate or revoke it: a fresh one for each of their cases
            current = _fresh_key(api) if operation.path.startswith("/v1/keys") else key
            headers["Authorization"] = f"Bearer {current}"
        case.headers = headers
        response = case.call()
        calls += 1
        for problem in _problems_of(case, response):
            failures.setdefault(f"{operation.label} [{auth}] {problem}", case.as_curl_command()[:400])

    with contextlib.suppress(Unsatisfiable):  # e.g. no invalid input exists for GET /healthz
        run()
    return calls


def test_fuzz_every_operation(api: Api) -> None:
    schema = schemathesis.openapi.from_asgi("/openapi.json", api.client.app)
    key = _fresh_key(api)
    failures: dict[str, str] = {}
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 12
    calls = sum(
        _fuzz(api, operation, auth, mode, key, failures)
        for operation in operations
        for auth in EXAMPLES
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
    )
    assert calls > 200
    assert not failures, "\n".join(f"{k}\n    {v}" for k, v in failures.items())
