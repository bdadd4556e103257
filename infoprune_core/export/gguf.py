"""Write a Llama-family artifact (or a plain model folder) as one GGUF file that llama.cpp runs.

Tensor names and conventions follow llama.cpp's `convert_hf_to_gguf.py` and `gguf-py` tensor map:
`token_embd`, `blk.N.attn_norm|attn_q|attn_k|attn_v|attn_output|ffn_norm|ffn_gate|ffn_up|ffn_down`,
`output_norm`, `output` (left out when the embeddings are tied: llama.cpp then reuses `token_embd`).
Matrices are written in torch's [out, in] order (GGUF lists dimensions the other way round); for the
architectures that rotate consecutive pairs (`llama`, `deci`) the rows of each Q and K head, weight
and bias, are reordered from transformers' rotate-half layout. Matrices are f16 (default) or f32,
norms and biases f32. Weights are read from safetensors only; the file appears whole or not at all.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import gguf
import numpy as np
import torch
from safetensors import safe_open

from infoprune_core.errors import ArtifactError
from infoprune_core.export.errors import ExportRefused
from infoprune_core.export.layout import Layout
from infoprune_core.export.plan import ExportPlan, plan_export
from infoprune_core.sources import check_model_directory

Dtype = Literal["f16", "f32"]
DTYPES: tuple[Dtype, ...] = ("f16", "f32")
F16_MAX = 65504.0
# transformers name inside `model.layers.N.` -> GGUF name inside `blk.N.`
LAYER_TENSORS = {
    "input_layernorm.weight": "attn_norm.weight",
    "post_attention_layernorm.weight": "ffn_norm.weight",
    "self_attn.q_norm.weight": "attn_q_norm.weight",  # Qwen3's per-head RMSNorms over head_dim
    "self_attn.k_norm.weight": "attn_k_norm.weight",
    **{
        f"{module}.{kind}": f"{name}.{kind}"
        for module, name in (
            ("self_attn.q_proj", "attn_q"),
            ("self_attn.k_proj", "attn_k"),
            ("self_attn.v_proj", "attn_v"),
            ("self_attn.o_proj", "attn_output"),
            ("mlp.gate_proj", "ffn_gate"),
            ("mlp.up_proj", "ffn_up"),
            ("mlp.down_proj", "ffn_down"),
        )
        for kind in ("weight", "bias")
    },
}
OPTIONAL = (".bias", "attn_q_norm.weight", "attn_k_norm.weight")  # the Q/K norms: Qwen3 only
EMBEDDING, HEAD, FINAL_NORM = "model.embed_tokens.weight", "lm_head.weight", "model.norm.weight"


def rotate_half_to_pairs(weight: np.ndarray, heads: int) -> np.ndarray:
    """Reorder each head's rows so pair (i, i + d/2) of rotate-half RoPE becomes rows (2i, 2i + 1)."""
    half = weight.shape[0] // heads // 2
    return weight.reshape(heads, 2, half, *weight.shape[1:]).swapaxes(1, 2).reshape(weight.shape)


class Weights:
    """Every tensor of a folder's safetensors files, read by name, each name used once."""

    def __init__(self, directory: Path) -> None:
        self.files = [safe_open(str(path), framework="pt") for path in sorted(directory.glob("*.safetensors"))]
        self.where = {name: handle for handle in self.files for name in handle.keys()}  # noqa: SIM118
        self.unused = set(self.where)

    def get(self, name: str) -> np.ndarray | None:
        if name not in self.where:
            return None
        self.unused.discard(name)
        return self.where[name].get_tensor(name).to(torch.float32).numpy()

    def require(self, name: str) -> np.ndarray:
        tensor = self.get(name)
        if tensor is None:
            raise ArtifactError(f"the weights have no tensor {name!r}")
        return tensor


def _expected_shape(layout: Layout, layer: int, name: str) -> tuple[int, ...]:
    q, kv = layout.heads[layer] * layout.head_dim, layout.kv_heads[layer] * layout.head_dim
    ffn, hidden = layout.ffn[layer], layout.hidden
    module, _, kind = name.rpartition(".")
    rows, columns = {
        "attn_q": (q, hidden),
        "attn_k": (kv, hidden),
        "attn_v": (kv, hidden),
        "attn_output": (hidden, q),
        "ffn_gate": (ffn, hidden),
        "ffn_up": (ffn, hidden),
        "ffn_down": (hidden, ffn),
        "attn_q_norm": (layout.head_dim, 0),
        "attn_k_norm": (layout.head_dim, 0),
    }.get(module, (hidden, 0))
    return (rows,) if kind == "bias" or columns == 0 else (rows, columns)


def gguf_tensors(layout: Layout, weights: Weights) -> Iterator[tuple[str, np.ndarray]]:
    """(GGUF name, float32 array) for every tensor, shapes checked against the layout."""
    embedding = weights.get(EMBEDDING)
    head = weights.get(HEAD)
    if embedding is None and layout.tied:
        embedding = head  # a tied pair stored once under the head's name
    if embedding is None:
        raise ArtifactError(f"the weights have no {EMBEDDING!r}")
    yield "token_embd.weight", embedding
    for layer in range(layout.layers):
        for source, target in LAYER_TENSORS.items():
            tensor = weights.get(f"model.layers.{layer}.{source}")
            if tensor is None:
                if target.endswith(OPTIONAL):
                    continue
                raise ArtifactError(f"the weights have no tensor 'model.layers.{layer}.{source}'")
            expected = _expected_shape(layout, layer, target)
            if tensor.shape != expected:
                raise ArtifactError(
                    f"model.layers.{layer}.{source} has shape {tuple(tensor.shape)}, the recorded structure "
                    f"says {expected}"
                )
            if layout.permute_qk and target.startswith(("attn_q.", "attn_k.")):
                heads = layout.heads[layer] if target.startswith("attn_q.") else layout.kv_heads[layer]
                tensor = rotate_half_to_pairs(tensor, heads)
            yield f"blk.{layer}.{target}", tensor
    yield "output_norm.weight", weights.require(FINAL_NORM)
    if not layout.tied:
        yield "output.weight", weights.require(HEAD)
    if layout.rope.kind == "llama3":
        yield "rope_freqs.weight", np.asarray(layout.rope.llama3_factors(layout.head_dim), dtype=np.float32)
    if weights.unused:
        raise ArtifactError(f"the weights hold tensors llama.cpp would not read: {sorted(weights.unused)[:5]}")


def _stored(name: str, tensor: np.ndarray, dtype: Dtype) -> np.ndarray:
    if tensor.ndim < 2 or dtype == "f32":
        return np.ascontiguousarray(tensor, dtype=np.float32)
    peak = float(np.abs(tensor).max(initial=0.0))
    if not peak <= F16_MAX:
        raise ExportRefused(f"{name} holds {peak:.3g}, beyond float16's range: export with --dtype f32")
    return np.ascontiguousarray(tensor, dtype=np.float16)


def _check_output(directory: Path, output: Path) -> None:
    if output.suffix != ".gguf":
        raise ArtifactError(f"the GGUF output {output} must end in .gguf")
    resolved, source = output.resolve(), directory.resolve()
    if resolved == source or source in resolved.parents:
        raise ArtifactError(f"the GGUF output {output} lies inside the artifact {directory}: write it elsewhere")
    if output.exists():
        raise ArtifactError(f"the GGUF output {output} already exists")


def _write_header(writer: gguf.GGUFWriter, plan: ExportPlan, directory: Path, dtype: Dtype) -> None:
    layout, vocabulary = plan.layout, plan.vocabulary

    def per_layer(values: tuple[int, ...]) -> int | list[int]:
        return values[0] if layout.uniform else list(values)

    writer.add_name(plan.name)
    writer.add_context_length(layout.context_length)
    writer.add_embedding_length(layout.hidden)
    writer.add_block_count(layout.layers)
    writer.add_feed_forward_length(per_layer(layout.ffn))
    writer.add_head_count(per_layer(layout.heads))
    writer.add_head_count_kv(per_layer(layout.kv_heads))
    writer.add_key_length(layout.head_dim)
    writer.add_value_length(layout.head_dim)
    writer.add_rope_dimension_count(layout.head_dim)
    writer.add_rope_freq_base(layout.rope.theta)
    if layout.rope.kind == "linear":
        writer.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        writer.add_rope_scaling_factor(layout.rope.factor)
    writer.add_layer_norm_rms_eps(layout.rms_eps)
    writer.add_vocab_size(layout.vocab_size)
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_F16 if dtype == "f16" else gguf.LlamaFileType.ALL_F32)
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    writer.add_tokenizer_model(vocabulary.model)
    if vocabulary.pre is not None:
        writer.add_tokenizer_pre(vocabulary.pre)
    writer.add_token_list(vocabulary.tokens)
    writer.add_token_types(vocabulary.types)
    special = gguf.SpecialVocab(directory, load_merges=vocabulary.model == "gpt2", n_vocab=len(vocabulary.tokens))
    special.add_to_gguf(writer, quiet=True)
    for kind in ("bos", "eos", "sep"):  # what transformers adds, not llama.cpp's per-tokenizer defaults
        if kind not in special.add_special_token:
            writer.add_bool(f"tokenizer.ggml.add_{kind}_token", False)
    if vocabulary.model == "bert":  # WordLevel is case-sensitive; llama.cpp's WordPiece lowercases by default
        writer.add_bool("tokenizer.ggml.normalizer.lowercase", False)


def export_gguf(artifact: str | Path, output: str | Path, dtype: Dtype = "f16") -> Path:
    """Write `artifact` (an InfoPrune artifact or a plain model folder) to the GGUF file `output`.

    Raises ExportRefused when llama.cpp cannot express the model, ArtifactError on bad paths or weights.
    """
    directory, output = Path(artifact), Path(output)
    if dtype not in DTYPES:
        raise ArtifactError(f"dtype {dtype!r}: choose one of {', '.join(DTYPES)}")
    check_model_directory(directory)
    _check_output(directory, output)
    plan = plan_export(directory)
    output.parent.mkdir(parents=True, exist_ok=True)
    handle, scratch = tempfile.mkstemp(prefix=f".{output.name}.", dir=output.parent)
    os.close(handle)
    try:
        writer = gguf.GGUFWriter(scratch, plan.layout.arch)
        _write_header(writer, plan, directory, dtype)
        for name, tensor in gguf_tensors(plan.layout, Weights(directory)):
            writer.add_tensor(name, _stored(name, tensor, dtype))
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        os.replace(scratch, output)
    finally:
        if os.path.exists(scratch):
            os.remove(scratch)
    return output
