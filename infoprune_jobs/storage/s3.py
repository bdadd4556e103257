"""S3 artifact storage (boto3; any S3-compatible endpoint). Downloads are presigned GET URLs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from infoprune_jobs.storage.base import StorageError, check_key


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
    ) -> None:
        self.bucket = bucket
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
            config=Config(retries={"max_attempts": 3, "mode": "standard"}, s3={"addressing_style": "path"}),
        )

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
        self._ensure_bucket()
        self.client.upload_file(str(path), self.bucket, self._obj(key))

    def put_bytes(self, key: str, data: bytes) -> None:
        self._ensure_bucket()
        self.client.put_object(Bucket=self.bucket, Key=self._obj(key), Body=data)

    def get_file(self, key: str, dest: Path) -> None:
        try:
            self.client.download_file(self.bucket, self._obj(key), str(dest))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey"):
                raise KeyError(key) from exc
            raise

    def get_bytes(self, key: str) -> bytes:
        try:
            body: bytes = self.client.get_object(Bucket=self.bucket, Key=self._obj(key))["Body"].read()
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey"):
                raise KeyError(key) from exc
            raise
        return body

    def list(self, prefix: str) -> list[str]:
        full = self._obj(prefix) + "/"
        strip = len(self.prefix) + 1 if self.prefix else 0
        keys: list[str] = []
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=full):
            keys.extend(item["Key"][strip:] for item in page.get("Contents", []))
        return sorted(keys)

    def delete_prefix(self, prefix: str) -> None:
        keys = self.list(prefix)
        for start in range(0, len(keys), 1000):
            chunk = [{"Key": self._obj(k)} for k in keys[start : start + 1000]]
            self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": chunk, "Quiet": True})

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
