"""Tiny Llama-family models, compressed once per session into artifacts of every shape the export meets."""

from __future__ import annotations

from pathlib import Path

import pytest

from infoprune_core import CompressionConfig, compress
from tests.core.conftest import _one_thread  # noqa: F401  (autouse: one torch thread here too)
from tests.core.tiny_models import FAMILIES, save_with_processor

FAST = dict(gate_steps=8, recovery_steps=0, calibration_samples=16, held_out_samples=4, measure_latency=False)
# At 0.4x the tiny decoders lose a whole KV group in one layer only, and FFN width differently per layer.
CONFIGS = {
    "free": CompressionConfig(target_flops_ratio=0.4, **FAST),
    "uniform": CompressionConfig(target_flops_ratio=0.4, shape="uniform", **FAST),
    "lowrank": CompressionConfig(target_flops_ratio=0.7, heads="none", ffn="whitened_svd", **FAST),
}


@pytest.fixture(scope="session")
def sources(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("sources")
    return {name: save_with_processor(FAMILIES[name](), root / name) for name in ("llama", "qwen2", "qwen3", "bert")}


@pytest.fixture(scope="session")
def artifacts(sources: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """`<family>-<shape>` -> artifact directory: llama and qwen2 in every shape of CONFIGS, qwen3 and bert
    in some."""
    root = tmp_path_factory.mktemp("artifacts")
    names = [f"{family}-{shape}" for family in ("llama", "qwen2") for shape in CONFIGS]
    names += ["qwen3-free", "qwen3-uniform", "bert-free"]
    built = {}
    for name in names:
        family, shape = name.split("-")
        built[name] = compress(str(sources[family]), root / name, CONFIGS[shape]).output_dir
    return built
