"""Per-tenant request rate (token bucket: in memory, or in Redis shared by every API process) and
per-tenant active-job quota: over either, 429 problem+json with Retry-After; other tenants unaffected."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from api.limits import MemoryTokenBucket, NoRateLimit, RedisTokenBucket, make_rate_limiter
from infoprune_jobs.settings import Settings
from tests.api.conftest import JOB, Api
from tests.api.test_hostile import assert_problem
from tests.conftest import RUN_ID


def _assert_429(r: Any, type_: str) -> dict[str, Any]:
    body = assert_problem(r, 429)
    assert body["type"].endswith(type_)
    assert int(r.headers["retry-after"]) >= 1 and body["retry_after"] == int(r.headers["retry-after"])
    return body


class TestRequestRate:
    @pytest.fixture
    def api_overrides(self) -> dict[str, Any]:
        return {"rate_limit_per_s": 0.01, "rate_limit_burst": 4}

    def test_burst_then_429_per_tenant(self, api: Api) -> None:
        assert isinstance(api.ctx.limiter, MemoryTokenBucket)
        for _ in range(3):  # bad keys are refused before the limiter: they cost the tenant nothing
            assert_problem(api.client.get("/v1/jobs", headers=api.headers("ipk_" + "x" * 40)), 401)
        assert [api.client.get("/v1/jobs", headers=api.headers()).status_code for _ in range(4)] == [200] * 4
        _assert_429(api.client.get("/v1/jobs", headers=api.headers()), "rate-limited")
        _assert_429(api.client.post("/v1/jobs", json=JOB, headers=api.headers()), "rate-limited")
        assert api.client.get("/v1/jobs", headers=api.headers(api.key_b)).status_code == 200  # B has its own bucket
        assert api.client.get("/healthz").status_code == 200  # probes are not limited


def test_memory_bucket_refills_at_the_rate() -> None:
    now = [100.0]
    bucket = MemoryTokenBucket(rate=2.0, burst=3, clock=lambda: now[0])
    assert [bucket.acquire("t") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.acquire("t") == pytest.approx(0.5)
    now[0] += 0.5  # one token back
    assert bucket.acquire("t") == 0.0 and bucket.acquire("t") > 0
    now[0] += 60  # never more than the burst saved up
    assert sum(bucket.acquire("t") == 0.0 for _ in range(10)) == 3


def test_redis_bucket_is_shared_by_api_processes(redis_url: str) -> None:
    settings = Settings(
        broker_url=redis_url,
        queue_prefix=f"infoprune-test-{RUN_ID}-{uuid.uuid4().hex[:6]}.",
        rate_limit_per_s=0.01,
        rate_limit_burst=5,
    )
    first, second = make_rate_limiter(settings), make_rate_limiter(settings)  # two processes' limiters
    assert isinstance(first, RedisTokenBucket) and first is not second
    waits = [limiter.acquire("tenant") for limiter in (first, second) * 4]
    assert waits[:5] == [0.0] * 5 and all(w > 1 for w in waits[5:])
    assert first.acquire("other-tenant") == 0.0


def test_limiter_choice_and_redis_down_fails_open() -> None:
    assert isinstance(make_rate_limiter(Settings(rate_limit_per_s=0)), NoRateLimit)
    assert isinstance(make_rate_limiter(Settings()), MemoryTokenBucket)  # embedded: no broker
    down = make_rate_limiter(Settings(broker_url="redis://127.0.0.1:1/0", rate_limit_burst=1))
    assert isinstance(down, RedisTokenBucket)
    assert [down.acquire("t") for _ in range(3)] == [0.0] * 3  # the limiter never takes the API down


class TestRedisLimitedApi:
    @pytest.fixture
    def api_overrides(self, redis_url: str) -> dict[str, Any]:
        prefix = f"infoprune-test-{RUN_ID}-{uuid.uuid4().hex[:6]}."
        return {"broker_url": redis_url, "queue_prefix": prefix, "rate_limit_per_s": 0.01, "rate_limit_burst": 2}

    def test_http_429_through_redis(self, api: Api) -> None:
        assert isinstance(api.ctx.limiter, RedisTokenBucket)
        assert [api.client.get("/v1/jobs", headers=api.headers()).status_code for _ in range(2)] == [200, 200]
        body = _assert_429(api.client.get("/v1/jobs", headers=api.headers()), "rate-limited")
        assert body["retry_after"] > 1


class TestJobQuota:
    @pytest.fixture
    def api_overrides(self) -> dict[str, Any]:
        return {"max_active_jobs_per_tenant": 3}

    def test_active_jobs_are_capped_and_replays_and_cancels_count_right(self, api: Api) -> None:
        ids = []
        for i in range(3):
            r = api.client.post("/v1/jobs", json=JOB, headers={**api.headers(), "Idempotency-Key": f"k{i}"})
            assert r.status_code == 202
            ids.append(r.json()["id"])
        body = _assert_429(api.client.post("/v1/jobs", json=JOB, headers=api.headers()), "job-quota-exceeded")
        assert "3" in body["detail"]
        replay = api.client.post("/v1/jobs", json=JOB, headers={**api.headers(), "Idempotency-Key": "k0"})
        assert replay.status_code == 202 and replay.json()["id"] == ids[0]  # a replay is not a new job
        assert api.client.post("/v1/jobs", json=JOB, headers=api.headers(api.key_b)).status_code == 202
        assert api.client.post(f"/v1/jobs/{ids[0]}/cancel", headers=api.headers()).json()["status"] == "cancelled"
        assert api.client.post("/v1/jobs", json=JOB, headers=api.headers()).status_code == 202
        assert len(api.client.get("/v1/jobs", headers=api.headers()).json()["data"]) == 4

    def test_concurrent_submissions_do_not_overshoot(self, api: Api) -> None:
        with ThreadPoolExecutor(8) as pool:
            codes = list(pool.map(lambda _: api.client.post("/v1/jobs", json=JOB, headers=api.headers()), range(8)))
        assert sorted(r.status_code for r in codes) == [202] * 3 + [429] * 5
        active = api.client.get("/v1/jobs?status=queued", headers=api.headers()).json()["data"]
        assert len(active) == 3
