"""S3 artifact storage (boto3; any S3-compatible endpoint). Downloads are presigned GET URLs.

Every data operation is retried with exponential backoff while the store is unreachable or answers
with a server error (``attempts`` tries, waits ``backoff_s``, doubled up to ``backoff_max_s``), then
fails with :class:`StorageError`. An object is written by one PUT (or a multipart upload completed
only at its end), so a failed upload never leaves a half-written object behind.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import boto3
from boto3.exceptions import S3TransferFailedError, S3UploadFailedError
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from infoprune_jobs.storage.base import StorageError, check_key

log = logging.getLogger(__name__)
# SigV4 signing logs each signature at DEBUG: for a presigned URL that is the credential itself
logging.getLogger("botocore.auth").setLevel(logging.INFO)
T = TypeVar("T")
_RETRYABLE_CODES = frozenset({"RequestTimeout", "SlowDown", "Throttling", "ThrottlingException", "InternalError"})


def _retryable(exc: Exception) -> bool:
    """Connection trouble, timeouts, 5xx and throttling are worth another try; 4xx answers are not."""
    if isinstance(exc, BotoCoreError | S3UploadFailedError | S3TransferFailedError):
        return True
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        return status >= 500 or status == 429 or error.get("Code") in _RETRYABLE_CODES
    return False


class S3Storage:
    def __init__(
        self,
        bucket: str,
        *,
        prefix: str = "",
        endpoint_url: str | None = None,
        region: str = "us-east-1",
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        create_bucket: bool = False,
        public_endpoint_url: str | None = None,
        attempts: int = 5,
        backoff_s: float = 1.0,
        backoff_max_s: float = 30.0,
    ) -> None:
        self.bucket = bucket
        self.attempts, self.backoff_s, self.backoff_max_s = max(attempts, 1), backoff_s, backoff_max_s
        self.prefix = prefix.strip("/")
        self.client: Any = self._make_client(endpoint_url, region, access_key_id, secret_access_key)
        # Presigned URLs are signed for the host clients will use (the signature covers it).
        self._presigner: Any = (
            self._make_client(public_endpoint_url, region, access_key_id, secret_access_key)
            if public_endpoint_url
            else self.client
        )
        self._create_bucket = create_bucket
        self._bucket_ready = False

    @staticmethod
    def _make_client(
        endpoint_url: str | None, region: str, access_key_id: str | None, secret_access_key: str | None
    ) -> Any:
        return boto3.client(
            "s3",
            endpoint_url=endpoint_url,
            region_name=region,
            aws_access_key_id=access_key_id,
            aws_secret_access_key=secret_access_key,
            # one try per call: retries (with our backoff and limits) are done by _retry
            config=Config(
                signature_version="s3v4",  # presigned URLs too (botocore's default for those is SigV2)
                retries={"total_max_attempts": 1},
                connect_timeout=10,
                read_timeout=60,
                s3={"addressing_style": "path"},
            ),
        )

    def _retry(self, what: str, op: Callable[[], T]) -> T:
        """Run ``op``; retry transient failures with exponential backoff, then raise StorageError."""
        delay = self.backoff_s
        for attempt in range(1, self.attempts + 1):
            try:
                return op()
            except (BotoCoreError, ClientError, S3UploadFailedError, S3TransferFailedError) as exc:
                if not _retryable(exc):
                    raise
                if attempt == self.attempts:
                    raise StorageError(
                        f"artifact store unavailable: {what} failed after {attempt} tries ({type(exc).__name__}: {exc})"
                    ) from exc
                log.warning(
                    "storage: %s failed (try %d of %d: %s); retrying in %.1fs",
                    what,
                    attempt,
                    self.attempts,
                    type(exc).__name__,
                    delay,
                )
                time.sleep(delay)
                delay = min(delay * 2, self.backoff_max_s)
        raise AssertionError("unreachable")

    def _obj(self, key: str) -> str:
        check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _ensure_bucket(self) -> None:
        if self._bucket_ready or not self._create_bucket:
            return
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except ClientError:
            try:
                self.client.create_bucket(Bucket=self.bucket)
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") not in (
                    "BucketAlreadyOwnedByYou",
                    "BucketAlreadyExists",
                ):
                    raise StorageError(f"cannot create bucket {self.bucket}: {exc}") from exc
        self._bucket_ready = True

    def put_file(self, key: str, path: Path) -> None:
        obj = self._obj(key)
        self._retry(f"upload of {key}", self._ensure_bucket)
        self._retry(f"upload of {key}", lambda: self.client.upload_file(str(path), self.bucket, obj))

    def put_bytes(self, key: str, data: bytes) -> None:
        obj = self._obj(key)
        self._retry(f"upload of {key}", self._ensure_bucket)
        self._retry(f"upload of {key}", lambda: self.client.put_object(Bucket=self.bucket, Key=obj, Body=data))

    def get_file(self, key: str, dest: Path) -> None:
        obj = self._obj(key)
        try:
            self._retry(f"download of {key}", lambda: self.client.download_file(self.bucket, obj, str(dest)))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey"):
                raise KeyError(key) from exc
            raise

    def get_bytes(self, key: str) -> bytes:
        obj = self._obj(key)
        try:
            body: bytes = self._retry(
                f"download of {key}", lambda: self.client.get_object(Bucket=self.bucket, Key=obj)["Body"].read()
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey"):
                raise KeyError(key) from exc
            raise
        return body

    def list(self, prefix: str) -> list[str]:
        full = self._obj(prefix) + "/"
        strip = len(self.prefix) + 1 if self.prefix else 0

        def pages() -> list[str]:
            keys: list[str] = []
            for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=full):
                keys.extend(item["Key"][strip:] for item in page.get("Contents", []))
            return keys

        return sorted(self._retry(f"listing of {prefix}", pages))

    def delete_prefix(self, prefix: str) -> None:
        keys = self.list(prefix)
        for start in range(0, len(keys), 1000):
            chunk = [{"Key": self._obj(k)} for k in keys[start : start + 1000]]
            delete = partial(self.client.delete_objects, Bucket=self.bucket, Delete={"Objects": chunk, "Quiet": True})
            self._retry(f"deletion under {prefix}", delete)

    def download_url(self, key: str, expires_in: int, base_url: str) -> str:
        url: str = self._presigner.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": self._obj(key)}, ExpiresIn=expires_in
        )
        return url

    def check(self) -> None:
        try:
            self._ensure_bucket()
            self.client.head_bucket(Bucket=self.bucket)
        except (BotoCoreError, ClientError) as exc:
            raise StorageError(f"S3 bucket {self.bucket} is not reachable: {exc}") from exc
