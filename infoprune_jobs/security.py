"""API keys (stored as SHA-256 hashes), signed download URLs, Standard Webhooks signatures."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time

KEY_PREFIX = "ipk_"
_PREFIX_LEN = 12  # chars of the token kept in clear for lookup


def new_api_key() -> tuple[str, str, str]:
    """Return (full key shown once, lookup prefix, hash to store)."""
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    return key, key_prefix(key), hash_key(key)


def key_prefix(key: str) -> str:
    return key[: len(KEY_PREFIX) + _PREFIX_LEN]


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def key_matches(key: str, stored_hash: str) -> bool:
    return hmac.compare_digest(hash_key(key), stored_hash)


def new_webhook_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


def sign_path(secret: bytes, path: str, expires: int) -> str:
    msg = f"{path}\n{expires}".encode()
    return base64.urlsafe_b64encode(hmac.new(secret, msg, hashlib.sha256).digest()).decode().rstrip("=")


def verify_path(secret: bytes, path: str, expires: int, signature: str, now: float | None = None) -> bool:
    if expires < (time.time() if now is None else now):
        return False
    # bytes: compare_digest refuses str with non-ASCII characters (a hostile signature is not an error)
    return hmac.compare_digest(sign_path(secret, path, expires).encode(), signature.encode("utf-8", "replace"))


def webhook_signature(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """``v1,<base64 HMAC-SHA256>`` over ``id.timestamp.body`` (Standard Webhooks)."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{msg_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
