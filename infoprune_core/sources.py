"""Where a model comes from: a local directory, an `s3://bucket/prefix` URI or a model-hub ID.

Every source ends up as a local directory that holds `config.json` and safetensors weights; pickled
weights are refused before anything is deserialised.
"""

from __future__ import annotations

import os
import re
from pathlib import Path, PurePosixPath

from infoprune_core.errors import SourceError

HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}(/[A-Za-z0-9][A-Za-z0-9._-]{0,95})?$")
S3_URI = re.compile(r"^s3://(?P<bucket>[a-z0-9][a-z0-9.-]{1,61}[a-z0-9])(?:/(?P<prefix>.*))?$")
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")
# Files a model directory may bring along; anything else in a remote source is not fetched.
FETCHED_PATTERNS = ["*.json", "*.safetensors", "*.txt", "*.model", "*.jinja", "*.tiktoken"]


def resolve_source(source: str, cache_dir: Path) -> Path:
    """A local directory holding the model named by `source` (downloaded into `cache_dir` if remote)."""
    if source.startswith("s3://"):
        directory = download_s3_prefix(source, cache_dir / "s3")
    elif Path(source).expanduser().exists() or source.startswith(("/", ".", "~")):
        directory = Path(source).expanduser().resolve()
    elif HUB_ID.match(source):
        directory = download_hub_snapshot(source)
    else:
        raise SourceError(
            f"model source {source!r} is neither an existing local directory, an s3://bucket/prefix URI, "
            "nor a hub ID like 'owner/name'"
        )
    check_model_directory(directory)
    return directory


def check_model_directory(directory: Path) -> None:
    """Refuse directories without a config or with pickle-only weights."""
    if not directory.is_dir():
        raise SourceError(f"model directory {directory} does not exist or is not a directory")
    if not (directory / "config.json").is_file():
        raise SourceError(f"{directory} has no config.json; a model directory needs config.json and *.safetensors")
    if not any(directory.glob("*.safetensors")):
        pickled = sorted(p.name for p in directory.iterdir() if p.suffix in PICKLE_SUFFIXES)
        if pickled:
            raise SourceError(
                f"{directory} holds only pickled weights ({', '.join(pickled)}); they are refused because "
                "unpickling runs code. Convert them to safetensors first."
            )
        raise SourceError(f"{directory} holds no *.safetensors weights")


def parse_s3_uri(uri: str) -> tuple[str, str]:
    match = S3_URI.match(uri)
    if not match:
        raise SourceError(f"{uri!r} is not a valid s3://bucket/prefix URI")
    prefix = (match.group("prefix") or "").strip("/")
    if any(part in ("..", ".") for part in PurePosixPath(prefix).parts):
        raise SourceError(f"{uri!r}: '.' and '..' are not allowed in an S3 prefix")
    return match.group("bucket"), prefix


def download_s3_prefix(uri: str, cache_dir: Path) -> Path:
    """Download the objects under an S3 prefix (one level, model files only).

    The endpoint and credentials come from boto3's usual environment (AWS_ENDPOINT_URL,
    AWS_ACCESS_KEY_ID, ...), so any S3-compatible store works.
    """
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    bucket, prefix = parse_s3_uri(uri)
    target = cache_dir / bucket / prefix if prefix else cache_dir / bucket
    client = boto3.client("s3")
    key_prefix = f"{prefix}/" if prefix else ""
    try:
        pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=key_prefix)
        keys = [item["Key"] for page in pages for item in page.get("Contents", [])]
        wanted = [k for k in keys if "/" not in k[len(key_prefix) :] and _is_fetched(k)]
        if not wanted:
            raise SourceError(f"{uri} holds no model files")
        target.mkdir(parents=True, exist_ok=True)
        for key in wanted:
            client.download_file(bucket, key, str(target / PurePosixPath(key).name))
    except (BotoCoreError, ClientError) as error:
        raise SourceError(f"cannot read {uri}: {error}") from error
    return target


def _is_fetched(key: str) -> bool:
    return any(PurePosixPath(key).match(pattern) for pattern in FETCHED_PATTERNS)


def download_hub_snapshot(repo_id: str) -> Path:
    """A hub snapshot (safetensors and config files only), from the standard hub cache or the network.

    The cache location follows HF_HUB_CACHE when set (read at call time, so a process can point at
    another cache); with HF_HUB_OFFLINE=1 only the cache is read.
    """
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    try:
        return Path(
            snapshot_download(
                repo_id,
                allow_patterns=FETCHED_PATTERNS,
                cache_dir=os.environ.get("HF_HUB_CACHE") or None,
                local_files_only=os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"),
            )
        )
    except (LocalEntryNotFoundError, HfHubHTTPError, OSError, ValueError) as error:
        raise SourceError(f"cannot fetch hub model {repo_id!r}: {error}") from error
