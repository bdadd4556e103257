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


_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def _blocked(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Not a public unicast address, also when an IPv4 address hides inside IPv6 (mapped, 6to4, Teredo, NAT64)."""
    if isinstance(ip, ipaddress.IPv6Address):
        inner = [ip.ipv4_mapped, ip.sixtofour, ip.teredo[1] if ip.teredo else None]
        if ip in _NAT64:
            inner.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
        if any(v is not None and _blocked(v) for v in inner):
            return True
    return not ip.is_global or ip.is_multicast or ip.is_reserved or ip.is_unspecified


def _resolve(host: str, port: int) -> list[str]:
    return [str(info[4][0]) for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)]


def check_webhook_url(url: str, *, allow_private: bool, resolve: bool = False, strict: bool = True) -> list[str]:
    """http(s) only, a host, no credentials; no loopback/private/link-local/metadata targets unless allowed.

    With ``resolve`` the host name is looked up and every address it resolves to must be public; the
    vetted addresses are returned (deliver to one of them, never look the name up again: DNS rebinding).
    ``strict=False`` lets a name that does not resolve (yet) pass: submission time, re-checked at delivery.
    """
    try:
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise WebhookRejected("webhook_url is not a valid URL") from exc
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise WebhookRejected("webhook_url must be an http(s) URL with a host")
    if parts.username or parts.password:
        raise WebhookRejected("webhook_url must not carry credentials")
    host = parts.hostname.rstrip(".")  # "localhost." is localhost
    addresses: list[str] = []
    try:
        addresses.append(str(ipaddress.ip_address(host)))
    except ValueError:
        if not allow_private and (host == "localhost" or host.endswith((".localhost", ".local", ".internal"))):
            raise WebhookRejected("webhook_url may not point at a local or internal host") from None
        if resolve:
            try:
                addresses.extend(_resolve(host, port))
            except (OSError, UnicodeError) as exc:
                if strict:
                    raise WebhookRejected(f"webhook host {host[:253]!r} does not resolve") from exc
    if not allow_private and any(_blocked(ipaddress.ip_address(a.split("%", 1)[0])) for a in addresses):
        raise WebhookRejected("webhook_url may not point at a private, loopback, link-local or metadata address")
    return addresses


def _pinned(url: str, address: str) -> tuple[str, dict[str, str], dict[str, Any]]:
    """The URL with its host replaced by the vetted address, the Host header and the TLS server name."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    literal = f"[{address}]" if ":" in address else address
    netloc = f"{literal}:{parts.port}" if parts.port else literal
    host_header = f"{host}:{parts.port}" if parts.port else host
    extensions: dict[str, Any] = {"sni_hostname": host} if parts.scheme == "https" else {}
    return parts._replace(netloc=netloc).geturl(), {"host": host_header}, extensions


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
        addresses = check_webhook_url(url, allow_private=allow_private, resolve=True)
    except WebhookRejected as exc:
        return False, str(exc)
    if not addresses:
        return False, "webhook host has no address"
    target, host_header, extensions = _pinned(url, addresses[0])
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
            **host_header,
        }
        try:
            # connect to the address vetted above; redirects are not followed (they could point anywhere)
            with httpx.Client(timeout=timeout_s, follow_redirects=False, trust_env=False) as client:
                resp = client.post(target, content=body, headers=headers, extensions=extensions)
            if 200 <= resp.status_code < 300:
                return True, f"delivered (HTTP {resp.status_code})"
            detail = f"HTTP {resp.status_code}"
        except httpx.HTTPError as exc:
            detail = type(exc).__name__
        log.warning("webhook attempt %d failed: %s", attempt + 1, detail)
        if attempt + 1 < attempts:
            time.sleep(2**attempt)
    return False, f"not delivered after {attempts} attempts: {detail}"
