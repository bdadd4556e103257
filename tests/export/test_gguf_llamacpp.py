"""Exported GGUFs run in llama.cpp and give the logits of the PyTorch model they came from."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from gguf import GGUFReader
from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

from infoprune_core import load_compressed
from infoprune_core.export.gguf import export_gguf
from tests.core.tiny_models import DECODER, word_tokenizer
from tests.export.llamacpp import llama_logits, torch_logits

IDS = [2, 5, 17, 9, 30, 12, 41, 7, 22, 8, 33, 14, 40, 6, 19, 25, 4, 11, 38, 27]
# Largest |llama.cpp - PyTorch| logit, relative to the largest |logit|: f32 weights and KV cache agree to
# float32 rounding; f16 weights round every matrix entry by up to 2^-11.
TOLERANCE = {"f32": 1e-5, "f16": 2e-3}


def _fields(path: Path) -> dict[str, object]:
    reader = GGUFReader(path)
    return {name: field.contents() for name, field in reader.fields.items() if not name.startswith("tokenizer")}


def _assert_close(gguf_path: Path, model: torch.nn.Module, dtype: str) -> None:
    reference = torch_logits(model, IDS)
    error = np.abs(llama_logits(gguf_path, IDS) - reference).max() / np.abs(reference).max()
    assert error <= TOLERANCE[dtype], f"{dtype}: relative logit error {error:.2e}"


@pytest.mark.parametrize("family", ["llama", "qwen2"])
def test_non_uniform_heads_and_widths_run_in_llama_cpp(family: str, artifacts, tmp_path: Path) -> None:
    artifact = artifacts[f"{family}-free"]
    model = load_compressed(artifact)
    for dtype in ("f32", "f16"):
        path = export_gguf(artifact, tmp_path / f"{dtype}.gguf", dtype)
        _assert_close(path, model, dtype)
    fields = _fields(tmp_path / "f32.gguf")
    assert fields["general.architecture"] == "deci"  # the architecture that reads shapes per layer
    heads, kv_heads = fields["deci.attention.head_count"], fields["deci.attention.head_count_kv"]
    widths = fields["deci.feed_forward_length"]
    assert isinstance(heads, list) and len(set(heads)) > 1 and isinstance(kv_heads, list) and len(set(kv_heads)) > 1
    assert isinstance(widths, list) and len(set(widths)) > 1
    structure = json.loads((artifact / "infoprune.json").read_text())["structure"]
    kept = [structure["attention"].get(f"model.layers.{i}.self_attn", range(6)) for i in range(2)]
    assert heads == [len(k) for k in kept]
    assert widths == [structure["ffn_width"].get(f"model.layers.{i}.mlp", 96) for i in range(2)]


# llama.cpp's qwen2 sizes Q and O as hidden x hidden: with heads cut, Qwen2 goes to deci as well.
@pytest.mark.parametrize(("family", "arch"), [("llama", "llama"), ("qwen2", "deci"), ("qwen3", "qwen3")])
def test_uniform_results_keep_their_own_architecture(family: str, arch: str, artifacts, tmp_path: Path) -> None:
    artifact = artifacts[f"{family}-uniform"]
    path = export_gguf(artifact, tmp_path / "model.gguf", "f32")
    _assert_close(path, load_compressed(artifact), "f32")
    fields = _fields(path)
    config = json.loads((artifact / "config.json").read_text())
    assert fields["general.architecture"] == arch
    assert fields[f"{arch}.attention.head_count"] == config["num_attention_heads"] < 6
    assert fields[f"{arch}.attention.head_count_kv"] == config["num_key_value_heads"]
    assert fields[f"{arch}.feed_forward_length"] == config["intermediate_size"] < 96


# Scaled RoPE with an original context of 8 tokens, so that the 20-token input reaches the scaled range.
ROPES = {
    "default": {"rope_type": "default", "rope_theta": 10000.0},
    "linear": {"rope_type": "linear", "rope_theta": 10000.0, "factor": 4.0},
    "llama3": {
        "rope_type": "llama3",
        "rope_theta": 10000.0,
        "factor": 8.0,
        "low_freq_factor": 1.0,
        "high_freq_factor": 4.0,
        "original_max_position_embeddings": 8,
    },
}


@pytest.mark.parametrize("rope", sorted(ROPES))
def test_a_plain_folder_with_tied_embeddings_and_scaled_rope_exports(rope: str, tmp_path: Path) -> None:
    torch.manual_seed(0)
    config = LlamaConfig(
        **DECODER, vocab_size=64, max_position_embeddings=128, tie_word_embeddings=True, rope_parameters=ROPES[rope]
    )
    model = LlamaForCausalLM(config).eval()
    model.save_pretrained(tmp_path / "source")
    word_tokenizer().save_pretrained(tmp_path / "source")
    path = export_gguf(tmp_path / "source", tmp_path / "model.gguf", "f32")
    names = {tensor.name for tensor in GGUFReader(path).tensors}
    assert "token_embd.weight" in names and "output.weight" not in names  # llama.cpp reuses the embedding
    assert ("rope_freqs.weight" in names) == (rope == "llama3")
    _assert_close(path, model, "f32")


def test_an_uncut_qwen2_keeps_its_architecture(sources, tmp_path: Path) -> None:
    path = export_gguf(sources["qwen2"], tmp_path / "model.gguf", "f32")
    assert _fields(path)["general.architecture"] == "qwen2"  # rotate-half RoPE: Q and K rows as they are
    _assert_close(path, AutoModelForCausalLM.from_pretrained(sources["qwen2"]).eval(), "f32")
