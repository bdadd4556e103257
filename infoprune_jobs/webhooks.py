"""Job-completion webhooks, signed per Standard Webhooks (webhook-id/-timestamp/-signature)."""

from __future__ import annotations

import ipaddress
import json
import logging
import socket
import time
from typing import Any
from urllib.parse import urlsplit

import httpx

from infoprune_jobs.security import webhook_signature

log = logging.getLogger(__name__)


class WebhookRejected(ValueError):
    pass


def check_webhook_url(url: str, *, allow_private: bool, resolve: bool = False) -> None:
    """http(s) only, a host, no credentials; no loopback/private/link-local targets unless allowed."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise WebhookRejected("webhook_url must be an http(s) URL with a host")
    if parts.username or parts.password:
        raise WebhookRejected("webhook_url must not carry credentials")
    if allow_private:
        return
    host = parts.hostname
    if host == "localhost" or host.endswith((".localhost", ".local", ".internal")):
        raise WebhookRejected("webhook_url may not point at a local or internal host")
    addresses: list[str] = []
    try:
        addresses.append(str(ipaddress.ip_address(host)))
    except ValueError:
        if resolve:
            try:
                addresses.extend(str(info[4][0]) for info in socket.getaddrinfo(host, parts.port or 443))
            except OSError as exc:
                raise WebhookRejected(f"webhook host {host!r} does not resolve") from exc
    for addr in addresses:
        ip = ipaddress.ip_address(addr)
        if not ip.is_global:
            raise WebhookRejected("webhook_url may not point at a private, loopback or link-local address")


def deliver(
    url: str,
    secret: str,
    event_type: str,
    data: dict[str, Any],
    *,
    msg_id: str,
    attempts: int = 3,
    timeout_s: float = 10.0,
    allow_private: bool = False,
) -> tuple[bool, str]:
    """POST the event with retries (1s, 2s, ...). Returns (delivered, detail)."""
    try:
        check_webhook_url(url, allow_private=allow_private, resolve=True)
    except WebhookRejected as exc:
        return False, str(exc)
    body = json.dumps(
        {"type": event_type, "timestamp": int(time.time()), "data": data}, separators=(",", ":"), default=str
    ).encode()
    detail = ""
    for attempt in range(attempts):
        ts = int(time.time())
        headers = {
            "content-type": "application/json",
            "webhook-id": msg_id,
            "webhook-timestamp": str(ts),
            "webhook-signature": webhook_signature(secret, msg_id, ts, body),
            "user-agent": "infoprune-webhooks/1",
        }
        try:
            resp = httpx.post(url, content=body, headers=headers, timeout=timeout_s, follow_redirects=False)
            if 200 <= resp.status_code < 300:
                return True, f"delivered (HTTP {resp.status_code})"
            detail = f"HTTP {resp.status_code}"
        except httpx.HTTPError as exc:
            detail = type(exc).__name__
        log.warning("webhook attempt %d failed: %s", attempt + 1, detail)
        if attempt + 1 < attempts:
            time.sleep(2**attempt)
    return False, f"not delivered after {attempts} attempts: {detail}"
