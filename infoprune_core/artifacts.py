"""The compressed-model directory: safetensors weights, the source's config and processor files, and
`infoprune.json` (format version, source, budget, structural edits, report). No pickle anywhere."""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
import transformers
from safetensors.torch import load_model as load_safetensors_into
from safetensors.torch import save_model as save_safetensors_from
from torch import nn
from transformers.initialization import no_init_weights

from infoprune_core.errors import ArtifactError
from infoprune_core.export.engines import engines_for
from infoprune_core.modeling import adapter_for_config, model_class, read_config
from infoprune_core.sources import PICKLE_SUFFIXES, check_model_directory
from infoprune_core.surgery import LowRankLinear, get_linear, prune_ffn_width, prune_heads

FORMAT_VERSION = 1
MANIFEST = "infoprune.json"
WEIGHTS = "model.safetensors"
NOT_COPIED = ("model.safetensors.index.json", MANIFEST)


def content_hash(directory: Path) -> str:
    """sha256 over the source's safetensors files (name and bytes), in name order."""
    digest = hashlib.sha256()
    for path in sorted(directory.glob("*.safetensors")):
        digest.update(path.name.encode())
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def apply_structure(model: nn.Module, config: dict[str, Any], structure: dict[str, Any]) -> None:
    """Replay recorded structural edits on a freshly built model (weights are loaded afterwards)."""
    adapter = adapter_for_config(config)
    sites = {site.name: site for site in adapter.attention_sites(model)}
    ffn_sites = {site.name: site for site in adapter.ffn_sites(model)}
    for name, kept in structure.get("attention", {}).items():
        if name not in sites:
            raise ArtifactError(f"manifest names attention block {name!r} that the model does not have")
        prune_heads(model, sites[name], kept)
    for name, width in structure.get("ffn_width", {}).items():
        if name not in ffn_sites:
            raise ArtifactError(f"manifest names FFN {name!r} that the model does not have")
        prune_ffn_width(model, ffn_sites[name], range(int(width)))
    for path, rank in structure.get("ffn_rank", {}).items():
        linear = get_linear(model, path)
        model.set_submodule(
            path, LowRankLinear(linear.in_features, int(rank), linear.out_features, bias=linear.bias is not None)
        )


def _copy_source_files(source: Path, target: Path) -> None:
    for path in source.iterdir():
        if path.is_file() and path.suffix not in (".safetensors", *PICKLE_SUFFIXES) and path.name not in NOT_COPIED:
            shutil.copy2(path, target / path.name)


@contextmanager
def atomic_directory(output: Path) -> Iterator[Path]:
    """A scratch directory renamed to `output` only when the block succeeds."""
    output = Path(output)
    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        raise ArtifactError(f"output {output} already exists and is not an empty directory")
    output.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{output.name}.", dir=output.parent))
    try:
        yield scratch
        if output.exists():
            output.rmdir()
        scratch.rename(output)
    finally:
        if scratch.exists():
            shutil.rmtree(scratch)


def save_compressed(model: nn.Module, source_dir: Path, output: Path, manifest: dict[str, Any]) -> Path:
    """Write the artifact atomically. The source config is kept in the manifest; config.json is the
    source's, or a stock config of the compressed shapes when the edits are uniform and the family's
    config can state them (its adapter's `plain_config`)."""
    source_config = read_config(source_dir)
    adapter = adapter_for_config(source_config)
    layers = len(adapter.attention_sites(model))
    plain = adapter.plain_config(source_config, manifest.get("structure", {}), layers)
    with atomic_directory(output) as scratch:
        _copy_source_files(source_dir, scratch)
        if plain is not None:
            (scratch / "config.json").write_text(json.dumps(plain, indent=2))
        save_safetensors_from(model, str(scratch / WEIGHTS), metadata={"format": "pt"})
        document = {
            "format_version": FORMAT_VERSION,
            "plain_from_pretrained": plain is not None,
            "source_config": source_config,
            **manifest,
        }
        document["engines"] = engines_for(document, scratch)
        (scratch / MANIFEST).write_text(json.dumps(document, indent=2, sort_keys=False, default=str))
    return output


def read_manifest(path: Path) -> dict[str, Any]:
    try:
        manifest = json.loads((Path(path) / MANIFEST).read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ArtifactError(f"{path} is not an InfoPrune artifact: cannot read {MANIFEST} ({error})") from error
    if manifest.get("format_version") != FORMAT_VERSION:
        raise ArtifactError(f"{path}: unsupported artifact format version {manifest.get('format_version')!r}")
    return manifest


def load_compressed(path: str | Path, device: str = "cpu") -> nn.Module:
    """Rebuild a compressed model: architecture from config, edits from the manifest, weights from safetensors."""
    directory = Path(path)
    check_model_directory(directory)
    manifest = read_manifest(directory)
    config = manifest.get("source_config") or read_config(directory)
    cls = model_class(config)
    fields = {key: value for key, value in config.items() if key != "model_type"}
    config_object = transformers.AutoConfig.for_model(config["model_type"], **fields)
    with no_init_weights():
        model = cls._from_config(config_object, dtype=torch.float32)
    apply_structure(model, config, manifest.get("structure", {}))
    model.tie_weights()  # tied tensors (e.g. embeddings and LM head) are stored once
    try:
        load_safetensors_into(model, str(directory / WEIGHTS), strict=True)
    except RuntimeError as error:
        raise ArtifactError(f"{directory / WEIGHTS} does not match the recorded structure: {error}") from error
    return adapter_for_config(config).attach(model.to(device).eval())
