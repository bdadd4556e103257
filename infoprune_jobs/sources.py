"""Model sources a job may name: a path inside the allowed root, ``s3://bucket/prefix``, a hub id
``owner/name``, or ``upload:<id>`` (a model uploaded through ``POST /v1/models``)."""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Literal

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
    value: str  # normalised: a path relative to the model root, s3 URI, hub id, or uploaded model id


def parse_source(raw: str, *, model_root: Path, s3_buckets: list[str], allow_hub: bool) -> ModelSource:
    """Validate a user-given source string. Local paths must exist inside ``model_root``; they are kept
    relative to it, the name a tenant sees (the server's own folders never reach it)."""
    if not raw or len(raw) > 1024 or any(ord(c) < 32 for c in raw):
        raise SourceRejected("source must be 1-1024 printable characters")
    if match := _UPLOAD.match(raw):
        return ModelSource("upload", match.group(1))
    if raw.startswith("s3://"):
        return ModelSource("s3", _parse_s3(raw, s3_buckets))
    if "://" in raw:
        raise SourceRejected("source scheme must be s3:// (or a local path, a hub id owner/name, upload:<id>)")
    if raw.startswith(("/", ".", "~")) or raw.count("/") != 1 or not _HUB.match(raw):
        return ModelSource("local", resolve_local(raw, model_root, want_dir=True))
    if (model_root / raw).is_dir():  # a relative path inside the root wins over a hub id
        return ModelSource("local", resolve_local(raw, model_root, want_dir=True))
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


def resolve_local(raw: str, model_root: Path, *, want_dir: bool = False) -> str:
    """The path of an existing file (or directory) inside ``model_root``, relative to it; raises SourceRejected."""
    return local_path(raw, model_root, want_dir=want_dir).relative_to(model_root.resolve()).as_posix()


def local_path(raw: str, model_root: Path, *, want_dir: bool = False) -> Path:
    """The absolute path of ``raw`` (relative to ``model_root``, or absolute inside it), which must exist
    inside the root. Messages name ``raw`` only, never the root."""
    pure = PurePosixPath(raw)
    if ".." in pure.parts or raw.startswith("~"):
        raise SourceRejected("local paths may not contain '..' or '~'")
    root = model_root.resolve()
    candidate = (pure if pure.is_absolute() else root / pure).as_posix()
    resolved = Path(candidate).resolve()
    if not resolved.is_relative_to(root):
        raise SourceRejected("local model paths must lie inside this server's model root")
    if not (resolved.is_dir() if want_dir else resolved.exists()):
        raise SourceRejected(f"nothing at {raw!r} inside the model root")
    return resolved


# -- model size from config.json, before anything is allocated --------------------------------------
MAX_CONFIG_BYTES = 1 << 20
_DIMS: dict[str, tuple[tuple[str, ...], int | None]] = {  # field names across families, default when absent
    "hidden": (("hidden_size", "d_model", "n_embd", "embed_dim", "dim", "width"), None),
    "layers": (("num_hidden_layers", "n_layer", "num_layers", "n_layers", "depth", "encoder_layers"), 12),
    "extra_layers": (("decoder_layers", "num_decoder_layers"), 0),
    "inter": (("intermediate_size", "ffn_dim", "n_inner", "encoder_ffn_dim", "mlp_dim"), None),
    "vocab": (("vocab_size",), 32_000),
    "positions": (("max_position_embeddings", "n_positions", "max_seq_len"), 512),
    "experts": (("num_local_experts", "num_experts", "n_routed_experts"), 1),
}


class ModelConfigRejected(ValueError):
    """config.json is unusable or implies more parameters than the server allows; the message says why."""


def _dim(config: dict[str, Any], name: str) -> int | None:
    keys, default = _DIMS[name]
    for key in keys:
        value = config.get(key)
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            continue
        return max(int(value), 0)
    return default


def estimate_parameters(config: dict[str, Any], _depth: int = 0) -> int:
    """Rough parameter count (an upper-ish estimate) of a transformers config and its sub-configs
    (text_config, vision_config, ...): embeddings plus per layer attention (4 h^2) and a gated FFN (3 h i)."""
    total = 0
    hidden = _dim(config, "hidden")
    if hidden is not None:
        inter = _dim(config, "inter") or 4 * hidden
        layers = (_dim(config, "layers") or 0) + (_dim(config, "extra_layers") or 0)
        experts = max(_dim(config, "experts") or 1, 1)
        embeddings = ((_dim(config, "vocab") or 0) + (_dim(config, "positions") or 0)) * hidden
        total = embeddings + layers * (4 * hidden * hidden + 3 * hidden * inter * experts)
    if _depth < 4:
        total += sum(estimate_parameters(v, _depth + 1) for v in config.values() if isinstance(v, dict))
    return total


def check_model_config(path: Path, max_parameters: int) -> None:
    """Refuse a config.json that is not a small JSON object or implies a model above ``max_parameters``."""
    try:
        if path.stat().st_size > MAX_CONFIG_BYTES:
            raise ModelConfigRejected(f"config.json is larger than {MAX_CONFIG_BYTES} bytes")
        config = json.loads(path.read_bytes())
    except ModelConfigRejected:
        raise
    except (OSError, ValueError, RecursionError) as exc:
        raise ModelConfigRejected(f"config.json is not readable JSON: {type(exc).__name__}") from exc
    if not isinstance(config, dict):
        raise ModelConfigRejected("config.json must be a JSON object")
    estimate = estimate_parameters(config)
    if estimate > max_parameters:
        raise ModelConfigRejected(
            f"config.json implies about {estimate:.3g} parameters, above this server's limit of {max_parameters:.3g}"
        )
