"""Limits: request body size (declared and received), per-tenant request rate (token bucket, shared
through Redis when one is configured) and per-tenant active-job quota."""

from __future__ import annotations

import logging
import math
import threading
import time
from typing import Any, Protocol

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.problems import PROBLEM_JSON, Problem
from infoprune_jobs.repository import TenantRepository
from infoprune_jobs.settings import Settings

log = logging.getLogger(__name__)


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, *, default_limit: int, upload_limit: int, upload_paths: tuple[str, ...]):
        self.app = app
        self.default_limit = default_limit
        self.upload_limit = upload_limit
        self.upload_paths = upload_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.upload_limit if scope["path"] in self.upload_paths else self.default_limit
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None:
            try:
                too_big = int(declared) > limit
            except ValueError:
                too_big = True
            if too_big:
                await _reject(scope, send, limit)
                return
        received = 0
        started = rejected = False

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if rejected:  # we already answered 413; drop what the app says afterwards
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        async def limited_receive() -> Message:
            nonlocal received, rejected
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    if not started and not rejected:
                        rejected = True
                        await _reject(scope, send, limit)
                    return {"type": "http.disconnect"}  # the app stops reading
            return message

        await self.app(scope, limited_receive, guarded_send)


async def _reject(scope: Scope, send: Send, limit: int) -> None:
    import json

    body: dict[str, Any] = {
        "type": "about:blank",
        "title": "Content Too Large",
        "status": 413,
        "detail": f"request body exceeds {limit} bytes (or has an invalid Content-Length)",
        "instance": scope["path"],
    }
    data = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", PROBLEM_JSON.encode()),
                (b"content-length", str(len(data)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": data})


class RateLimiter(Protocol):
    def acquire(self, tenant_id: str) -> float:
        """Take one token: 0.0 when allowed, else the seconds until the next token."""
        ...


class NoRateLimit:
    def acquire(self, tenant_id: str) -> float:
        return 0.0


class MemoryTokenBucket:
    """One process (embedded mode): ``rate`` tokens a second, at most ``burst`` saved up, per tenant."""

    def __init__(self, rate: float, burst: int, clock: Any = time.monotonic) -> None:
        self.rate, self.burst, self.clock = rate, burst, clock
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def acquire(self, tenant_id: str) -> float:
        with self._lock:
            now = self.clock()
            tokens, last = self._buckets.get(tenant_id, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - last) * self.rate)
            wait = 0.0 if tokens >= 1 else (1 - tokens) / self.rate
            self._buckets[tenant_id] = (tokens - 1 if wait == 0.0 else tokens, now)
            return wait


# Atomic in Redis, on Redis's clock: every API process shares one bucket per tenant.
_TOKEN_BUCKET_LUA = """
local rate, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local b = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens, ts = tonumber(b[1]) or burst, tonumber(b[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - ts) * rate)
local wait = 0
if tokens >= 1 then tokens = tokens - 1 else wait = (1 - tokens) / rate end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return tostring(wait)
"""


class RedisTokenBucket:
    """The same bucket in Redis. If Redis is unreachable the request is let through (and logged):
    the limiter protects the service, it must not take it down."""

    def __init__(self, url: str, rate: float, burst: int, prefix: str) -> None:
        import redis

        self._redis = redis.Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)
        self._script = self._redis.register_script(_TOKEN_BUCKET_LUA)
        self.rate, self.burst, self.prefix = rate, burst, prefix
        self._errors = 0

    def acquire(self, tenant_id: str) -> float:
        import redis

        try:
            wait = float(self._script(keys=[f"{self.prefix}ratelimit:{tenant_id}"], args=[self.rate, self.burst]))
        except redis.RedisError as exc:
            self._errors += 1
            if self._errors % 100 == 1:
                log.warning("rate limiter unavailable (requests are not limited): %s", type(exc).__name__)
            return 0.0
        return wait


def make_rate_limiter(settings: Settings) -> RateLimiter:
    if settings.rate_limit_per_s <= 0:
        return NoRateLimit()
    url = settings.rate_limit_redis_url
    if url is None and settings.broker_url and settings.broker_url.startswith(("redis://", "rediss://")):
        url = settings.broker_url
    if url is None:
        return MemoryTokenBucket(settings.rate_limit_per_s, settings.rate_limit_burst)
    return RedisTokenBucket(url, settings.rate_limit_per_s, settings.rate_limit_burst, settings.queue_prefix)


def too_many(detail: str, retry_after_s: float, type_: str) -> Problem:
    seconds = max(1, math.ceil(retry_after_s))
    return Problem(429, detail, type_=type_, headers={"Retry-After": str(seconds)}, retry_after=seconds)


def check_rate(limiter: RateLimiter, tenant_id: str) -> None:
    wait = limiter.acquire(tenant_id)
    if wait > 0:
        raise too_many("too many requests for this tenant; slow down", wait, "rate-limited")


def check_job_quota(repo: TenantRepository, settings: Settings) -> None:
    """Refuse a new job while the tenant has ``max_active_jobs_per_tenant`` queued or running ones.
    The tenant row is locked first, so concurrent submissions of one tenant cannot overshoot."""
    limit = settings.max_active_jobs_per_tenant
    if limit <= 0:
        return
    repo.lock_tenant()
    active = repo.count_active_jobs()
    if active >= limit:
        raise too_many(
            f"this tenant has {active} queued or running jobs, the most allowed at once is {limit}",
            30.0,
            "job-quota-exceeded",
        )
