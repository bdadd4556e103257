"""Model sources a job may name: a path inside the allowed root, ``s3://bucket/prefix``, a hub id
``owner/name``, or ``upload:<id>`` (a model uploaded through ``POST /v1/models``)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Literal

SourceKind = Literal["local", "s3", "hub", "upload"]

_HUB = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?/[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?$")
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_S3_KEY_PART = re.compile(r"^[A-Za-z0-9!_.*'()=+-]+$")
_UPLOAD = re.compile(r"^upload:([0-9a-f]{32})$")


class SourceRejected(ValueError):
    """The source is malformed or not allowed; the message says why."""


@dataclass(frozen=True)
class ModelSource:
    kind: SourceKind
    value: str  # normalised: absolute path, s3 URI, hub id, or uploaded model id


def parse_source(raw: str, *, model_root: Path, s3_buckets: list[str], allow_hub: bool) -> ModelSource:
    """Validate a user-given source string. Local paths must exist inside ``model_root``."""
    if not raw or len(raw) > 1024 or any(ord(c) < 32 for c in raw):
        raise SourceRejected("source must be 1-1024 printable characters")
    if match := _UPLOAD.match(raw):
        return ModelSource("upload", match.group(1))
    if raw.startswith("s3://"):
        return ModelSource("s3", _parse_s3(raw, s3_buckets))
    if "://" in raw:
        raise SourceRejected("source scheme must be s3:// (or a local path, a hub id owner/name, upload:<id>)")
    if raw.startswith(("/", ".", "~")) or raw.count("/") != 1 or not _HUB.match(raw):
        return ModelSource("local", _parse_local(raw, model_root))
    if (model_root / raw).is_dir():  # a relative path inside the root wins over a hub id
        return ModelSource("local", _parse_local(raw, model_root))
    if not allow_hub:
        raise SourceRejected("hub sources are disabled on this server")
    return ModelSource("hub", raw)


def _parse_s3(raw: str, buckets: list[str]) -> str:
    bucket, _, prefix = raw[len("s3://") :].partition("/")
    if not _BUCKET.match(bucket):
        raise SourceRejected(f"invalid S3 bucket name {bucket!r}")
    parts = [p for p in prefix.split("/") if p]
    if any(p in (".", "..") or not _S3_KEY_PART.match(p) for p in parts):
        raise SourceRejected("invalid S3 prefix (no '.', '..' or unusual characters)")
    if bucket not in buckets:
        raise SourceRejected(f"S3 bucket {bucket!r} is not allowed as a model source on this server")
    return f"s3://{bucket}/{'/'.join(parts)}".rstrip("/")


def resolve_local(raw: str, model_root: Path) -> str:
    """Absolute path of an existing directory or file inside ``model_root``; raises SourceRejected."""
    return _parse_local(raw, model_root, want_dir=False)


def _parse_local(raw: str, model_root: Path, want_dir: bool = True) -> str:
    pure = PurePosixPath(raw)
    if ".." in pure.parts or raw.startswith("~"):
        raise SourceRejected("local paths may not contain '..' or '~'")
    root = model_root.resolve()
    candidate = (pure if pure.is_absolute() else root / pure).as_posix()
    resolved = Path(candidate).resolve()
    if not resolved.is_relative_to(root):
        raise SourceRejected(f"local model paths must lie inside the model root {root}")
    if not (resolved.is_dir() if want_dir else resolved.exists()):
        raise SourceRejected(f"nothing at {raw!r} inside the model root")
    return str(resolved)
