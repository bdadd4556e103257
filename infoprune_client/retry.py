"""Retries of API calls, with tenacity: connection errors, timeouts, 429 and 503 are tried again with
exponential backoff (and jitter), or after the server's ``Retry-After`` when it gives one."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import httpx
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt, wait_exponential_jitter
from tenacity.wait import wait_base

log = logging.getLogger("infoprune_client")
RETRY_STATUSES = frozenset({429, 503})


class RetryableStatus(Exception):
    """A 429 or 503 answer, raised inside an attempt so that tenacity tries again."""

    def __init__(self, response: httpx.Response) -> None:
        super().__init__(f"{response.status_code} from {response.request.method} {response.request.url.path}")
        self.response = response
        self.retry_after = retry_after(response)


class ChecksumMismatch(Exception):
    """A transfer that arrived incomplete or altered; worth another try."""


def retry_after(response: httpx.Response) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date), None when absent or bad."""
    value = response.headers.get("retry-after")
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max((when - datetime.now(UTC)).total_seconds(), 0.0)


def transient(exc: BaseException) -> bool:
    return isinstance(exc, httpx.TransportError | RetryableStatus | ChecksumMismatch)


class wait_retry_after(wait_base):  # tenacity names its strategies in lower case
    """The server's Retry-After when it sent one (at most ``cap``), the fallback strategy otherwise."""

    def __init__(self, fallback: wait_base, cap: float) -> None:
        self.fallback = fallback
        self.cap = cap

    def __call__(self, retry_state: RetryCallState) -> float:
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        if isinstance(exc, RetryableStatus) and exc.retry_after is not None:
            return min(exc.retry_after, self.cap)
        return float(self.fallback(retry_state))


def _log_retry(retry_state: RetryCallState) -> None:
    exc = retry_state.outcome.exception() if retry_state.outcome else None
    wait = retry_state.next_action.sleep if retry_state.next_action else 0.0
    log.warning("infoprune: %s; retrying in %.1fs (try %d)", exc, wait, retry_state.attempt_number + 1)


def retrying(attempts: int, max_wait_s: float) -> Retrying:
    """The policy of every call: ``attempts`` tries in all; waits up to ``max_wait_s`` between two."""
    return Retrying(
        retry=retry_if_exception(transient),
        wait=wait_retry_after(wait_exponential_jitter(multiplier=0.5, max=max_wait_s, jitter=0.5), cap=max_wait_s),
        stop=stop_after_attempt(attempts),
        before_sleep=_log_retry,
        reraise=True,
    )
