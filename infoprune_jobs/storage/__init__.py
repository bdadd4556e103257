"""Artifact storage behind one interface; :func:`make_storage` picks the backend from settings."""

from __future__ import annotations

from infoprune_jobs.settings import Settings
from infoprune_jobs.storage.base import ArtifactStorage, StorageError, check_key, get_tree, put_tree
from infoprune_jobs.storage.local import DOWNLOAD_ROUTE, LocalStorage
from infoprune_jobs.storage.s3 import S3Storage

__all__ = [
    "DOWNLOAD_ROUTE",
    "ArtifactStorage",
    "LocalStorage",
    "S3Storage",
    "StorageError",
    "check_key",
    "get_tree",
    "make_storage",
    "put_tree",
]


def make_storage(settings: Settings) -> ArtifactStorage:
    if settings.storage_backend == "s3":
        secret = settings.s3_secret_access_key
        return S3Storage(
            settings.s3_bucket,
            prefix=settings.s3_prefix,
            endpoint_url=settings.s3_endpoint_url,
            region=settings.s3_region,
            access_key_id=settings.s3_access_key_id,
            secret_access_key=secret.get_secret_value() if secret else None,
            create_bucket=settings.s3_create_bucket,
            public_endpoint_url=settings.s3_public_endpoint_url,
            attempts=settings.storage_attempts,
            backoff_s=settings.storage_backoff_s,
            backoff_max_s=settings.storage_backoff_max_s,
        )
    return LocalStorage(settings.artifact_dir, settings.signing_key)
