"""Local-folder artifact storage; downloads go through an HMAC-signed route of the API."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from urllib.parse import quote, urlencode

from infoprune_jobs.security import sign_path, verify_path
from infoprune_jobs.storage.base import StorageError, check_key

DOWNLOAD_ROUTE = "/v1/files/"


class LocalStorage:
    def __init__(self, root: Path, signing_key: bytes) -> None:
        self.root = root.resolve()
        self._key = signing_key

    def path_of(self, key: str) -> Path:
        path = (self.root / check_key(key)).resolve()
        if not path.is_relative_to(self.root):
            raise ValueError(f"invalid storage key: {key!r}")
        return path

    def put_file(self, key: str, path: Path) -> None:
        target = self.path_of(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        shutil.copyfile(path, tmp)
        tmp.replace(target)

    def put_bytes(self, key: str, data: bytes) -> None:
        target = self.path_of(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        tmp.write_bytes(data)
        tmp.replace(target)

    def get_file(self, key: str, dest: Path) -> None:
        try:
            shutil.copyfile(self.path_of(key), dest)
        except FileNotFoundError as exc:
            raise KeyError(key) from exc

    def get_bytes(self, key: str) -> bytes:
        try:
            return self.path_of(key).read_bytes()
        except FileNotFoundError as exc:
            raise KeyError(key) from exc

    def list(self, prefix: str) -> list[str]:
        base = self.path_of(prefix)
        if not base.is_dir():
            return []
        return sorted(
            f"{prefix}/{p.relative_to(base).as_posix()}"
            for p in base.rglob("*")
            if p.is_file() and not p.name.startswith(".")
        )

    def delete_prefix(self, prefix: str) -> None:
        shutil.rmtree(self.path_of(prefix), ignore_errors=True)

    def download_url(self, key: str, expires_in: int, base_url: str) -> str:
        check_key(key)
        expires = int(time.time()) + expires_in
        query = urlencode({"expires": expires, "signature": sign_path(self._key, key, expires)})
        return f"{base_url.rstrip('/')}{DOWNLOAD_ROUTE}{quote(key)}?{query}"

    def verify(self, key: str, expires: int, signature: str) -> bool:
        return verify_path(self._key, key, expires, signature)

    def check(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            probe = self.root / f".ready.{os.getpid()}"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise StorageError(f"artifact folder {self.root} is not writable: {exc}") from exc
