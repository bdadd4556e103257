"""Files to and from the server: model archives to upload, artifacts downloaded with their sha256
checked and moved into place only when all of them arrived intact."""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath

import httpx

from infoprune_client.errors import ArtifactCorrupt
from infoprune_client.retry import ChecksumMismatch, RetryableStatus
from infoprune_client.schemas import ArtifactOut

ARCHIVE_TYPES = {
    ".zip": "application/zip",
    ".tar": "application/x-tar",
    ".gz": "application/gzip",
    ".tgz": "application/gzip",
}


@contextmanager
def model_archive(path: Path) -> Iterator[tuple[Path, str]]:
    """(archive, content type) of a model: an archive as it is, a folder packed as tar.gz (links followed)."""
    if path.is_file():
        yield path, ARCHIVE_TYPES.get(path.suffix.lower(), "application/octet-stream")
        return
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"{path} is neither an archive nor a model folder (no config.json)")
    with tempfile.TemporaryDirectory(prefix="infoprune-upload-") as scratch:
        archive = Path(scratch) / "model.tar.gz"
        with tarfile.open(archive, "w:gz", dereference=True) as tar:
            for file in sorted(p for p in path.rglob("*") if p.is_file()):
                tar.add(file, arcname=file.relative_to(path).as_posix())
        yield archive, "application/gzip"


def safe_name(name: str) -> PurePosixPath:
    """An artifact name as a relative path that stays inside the download folder."""
    pure = PurePosixPath(name)
    if not name or pure.is_absolute() or any(part in ("", ".", "..") for part in pure.parts):
        raise ArtifactCorrupt(f"refusing an artifact named {name!r}")
    return pure


class LinkExpired(Exception):
    """The download URL was refused (it expires): list the artifacts again for fresh ones."""


def fetch(files: httpx.Client, artifact: ArtifactOut, target: Path) -> None:
    """Stream one artifact to ``target``. Raises ChecksumMismatch or RetryableStatus (both retried) when
    it arrived altered or the store is busy, LinkExpired when the URL is refused."""
    target.parent.mkdir(parents=True, exist_ok=True)
    digest, size = hashlib.sha256(), 0
    with files.stream("GET", artifact.url) as response:
        if response.status_code in (401, 403):
            raise LinkExpired(artifact.name)
        if response.status_code == 429 or response.status_code >= 500:
            raise RetryableStatus(response)
        response.raise_for_status()
        with target.open("wb") as out:
            for chunk in response.iter_bytes(1 << 20):
                out.write(chunk)
                digest.update(chunk)
                size += len(chunk)
        out_hash = digest.hexdigest()
    if size != artifact.size or out_hash != artifact.sha256:
        raise ChecksumMismatch(
            f"{artifact.name}: got {size} bytes with sha256 {out_hash[:12]}…, expected {artifact.size} bytes "
            f"with sha256 {artifact.sha256[:12]}…"
        )


def install(staging: Path, dest: Path, names: list[PurePosixPath]) -> list[Path]:
    """Move verified files from ``staging`` to ``dest``: the whole folder in one rename when ``dest`` is
    new, else each file by an atomic replace (a reader never sees a partly written file)."""
    if not dest.exists():
        os.replace(staging, dest)
    else:
        for name in names:
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            os.replace(staging / name, dest / name)
        shutil.rmtree(staging, ignore_errors=True)
    return [dest / name for name in names]
