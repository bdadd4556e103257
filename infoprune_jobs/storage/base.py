"""Artifact storage interface: one protocol, a local-folder and an S3 backend."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Protocol

_KEY_PART = re.compile(r"^[A-Za-z0-9._-]+$")


class StorageError(Exception):
    """The store is unreachable or refused an operation."""


def check_key(key: str) -> str:
    """Keys are '/'-joined parts of safe characters; no empty, '.' or '..' parts."""
    parts = key.split("/")
    if not key or any(p in ("", ".", "..") or not _KEY_PART.match(p) for p in parts):
        raise ValueError(f"invalid storage key: {key!r}")
    return key


class ArtifactStorage(Protocol):
    def put_file(self, key: str, path: Path) -> None: ...

    def put_bytes(self, key: str, data: bytes) -> None: ...

    def get_file(self, key: str, dest: Path) -> None: ...

    def get_bytes(self, key: str) -> bytes: ...

    def list(self, prefix: str) -> list[str]:
        """Keys under ``prefix`` + '/' (sorted)."""
        ...

    def delete_prefix(self, prefix: str) -> None: ...

    def download_url(self, key: str, expires_in: int, base_url: str) -> str:
        """A URL that downloads ``key`` without credentials until it expires."""
        ...

    def check(self) -> None:
        """Raise StorageError when the store cannot be used (readiness)."""
        ...


def put_tree(storage: ArtifactStorage, prefix: str, root: Path) -> list[tuple[str, Path]]:
    """Upload every regular file under ``root`` to ``prefix/<relative path>``; returns (name, path)."""
    uploaded: list[tuple[str, Path]] = []
    for path in sorted(p for p in root.rglob("*") if p.is_file() and not p.is_symlink()):
        name = path.relative_to(root).as_posix()
        storage.put_file(f"{prefix}/{name}", path)
        uploaded.append((name, path))
    return uploaded


def get_tree(storage: ArtifactStorage, prefix: str, dest: Path) -> list[str]:
    """Download every key under ``prefix`` into ``dest`` (keys are validated, so no escape)."""
    names = []
    for key in storage.list(prefix):
        name = key[len(prefix) + 1 :]
        check_key(name)
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        storage.get_file(key, target)
        names.append(name)
    return names
