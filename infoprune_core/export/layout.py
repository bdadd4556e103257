"""What a llama.cpp GGUF must say about a model, decided from its config and recorded structure alone.

Which llama.cpp architecture can hold the shapes (read in the llama.cpp tree that llama-cpp-python
0.3.36 vendors, `src/llama-model.cpp` and `src/models/*.cpp`):
- Every architecture reads `<arch>.feed_forward_length`, `<arch>.attention.head_count` and
  `<arch>.attention.head_count_kv` with `get_key_or_arr(..., n_layer, ...)`: a scalar, or an array of
  one value per layer.
- `llama`, `qwen2` and `qwen3` then build every layer from layer 0's values (`LLAMA_LOAD_LOCALS` takes
  `hparams.n_head()`, `n_head_kv()`, `n_ff()` with no layer index), so they take only uniform shapes;
  `qwen2` moreover sizes Q and O as n_embd x n_embd, so it takes no cut heads at all.
- `deci` (DeciLM / Llama-Nemotron NAS, `src/models/deci.cpp`) reads `n_head(i)`, `n_head_kv(i)` and
  `n_ff(i)` per layer, both for its tensor shapes and in its graph, and is otherwise the Llama
  block: RMSNorm, RoPE on consecutive pairs (`LLAMA_ROPE_TYPE_NORM`), SwiGLU, optional Q/K/V/O and
  FFN biases. Non-uniform results go there, and Qwen2 ones with cut heads (its Q/K biases are permuted
  with the weights, which is what moving from NEOX to NORM rotation needs). `deci` has no per-head Q/K
  norms, so non-uniform Qwen3 results are refused (`qwen3` builds every layer from layer 0's shape).
- The head size is written as `attention.key_length` / `value_length`: otherwise llama.cpp derives
  it as `n_embd / n_head(0)`, wrong once heads are cut.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from infoprune_core.export.errors import ExportRefused


@dataclass(frozen=True)
class Family:
    uniform_arch: str  # llama.cpp architecture for one shape in every layer
    variable_arch: str | None  # one that reads head counts and FFN length per layer (None: refuse)
    full_width_only: bool = False  # uniform_arch sizes Q and O as hidden x hidden (no head may go)


# The one list of families the export takes (model_type -> llama.cpp architectures).
FAMILIES: dict[str, Family] = {
    "llama": Family("llama", "deci"),
    "mistral": Family("llama", "deci"),  # llama.cpp's own converter writes Mistral as `llama`
    "qwen2": Family("qwen2", "deci", full_width_only=True),
    "qwen3": Family("qwen3", None),  # its per-head q/k norms exist only in `qwen3`, which reads layer 0's shape
}
# Architectures that rotate consecutive pairs: HF's rotate-half Q/K rows are permuted for them.
NORM_ROPE_ARCHS = frozenset({"llama", "deci"})
ROPE_TYPES = ("default", "linear", "llama3")
MAX_LAYERS = 512  # LLAMA_MAX_LAYERS: the per-layer arrays are read into std::array<uint32_t, 512>
ATTENTION = re.compile(r"^model\.layers\.(\d+)\.self_attn$")
FFN = re.compile(r"^model\.layers\.(\d+)\.mlp$")


@dataclass(frozen=True)
class Rope:
    theta: float
    kind: str = "default"  # one of ROPE_TYPES
    factor: float = 1.0
    low_freq_factor: float = 1.0
    high_freq_factor: float = 4.0
    original_context: int = 8192

    def llama3_factors(self, head_dim: int) -> list[float]:
        """Per-frequency divisors of llama3 rope scaling (llama.cpp's `rope_freqs` tensor)."""
        low_wavelen = self.original_context / self.low_freq_factor
        high_wavelen = self.original_context / self.high_freq_factor
        factors = []
        for index in range(0, head_dim, 2):
            wavelen = 2 * math.pi * self.theta ** (index / head_dim)
            if wavelen < high_wavelen:
                factors.append(1.0)
            elif wavelen > low_wavelen:
                factors.append(self.factor)
            else:
                smooth = (self.original_context / wavelen - self.low_freq_factor) / (
                    self.high_freq_factor - self.low_freq_factor
                )
                factors.append(1.0 / ((1 - smooth) / self.factor + smooth))
        return factors


@dataclass(frozen=True)
class Layout:
    """Everything the GGUF header says about the network (tokenizer aside)."""

    model_type: str
    arch: str
    hidden: int
    head_dim: int
    heads: tuple[int, ...]
    kv_heads: tuple[int, ...]
    ffn: tuple[int, ...]
    vocab_size: int
    context_length: int
    rms_eps: float
    rope: Rope
    tied: bool

    @property
    def layers(self) -> int:
        return len(self.heads)

    @property
    def uniform(self) -> bool:
        return len(set(self.heads)) == len(set(self.kv_heads)) == len(set(self.ffn)) == 1

    @property
    def permute_qk(self) -> bool:
        return self.arch in NORM_ROPE_ARCHS


def _layer_values(entries: dict[str, Any], pattern: re.Pattern[str], layers: int, what: str) -> dict[int, Any]:
    values = {}
    for name, value in entries.items():
        match = pattern.match(name)
        if match is None or int(match.group(1)) >= layers:
            raise ExportRefused(f"the artifact cuts {what} {name!r}, which is not a decoder layer llama.cpp has")
        values[int(match.group(1))] = value
    return values


def _rope(config: dict[str, Any]) -> Rope:
    parameters = {**(config.get("rope_scaling") or {}), **(config.get("rope_parameters") or {})}
    kind = parameters.get("rope_type") or parameters.get("type") or "default"
    theta = float(parameters.get("rope_theta", config.get("rope_theta", 10000.0)))
    if kind not in ROPE_TYPES:
        raise ExportRefused(f"rope type {kind!r} is not exported to GGUF (supported: {', '.join(ROPE_TYPES)})")
    if float(config.get("partial_rotary_factor", parameters.get("partial_rotary_factor", 1.0))) != 1.0:
        raise ExportRefused("partial rotary embeddings are not exported to GGUF (partial_rotary_factor must be 1)")
    if kind == "default":
        return Rope(theta)
    return Rope(
        theta,
        kind,
        factor=float(parameters.get("factor", 1.0)),
        low_freq_factor=float(parameters.get("low_freq_factor", 1.0)),
        high_freq_factor=float(parameters.get("high_freq_factor", 4.0)),
        original_context=int(parameters.get("original_max_position_embeddings", 8192)),
    )


def _context_length(config: dict[str, Any]) -> int:
    """The trained context, capped at the sliding window that llama.cpp's llama/deci graphs do not apply."""
    length = int(config.get("max_position_embeddings", 4096))
    sliding = config.get("model_type") == "mistral" or bool(config.get("use_sliding_window"))
    window = config.get("sliding_window")
    return min(length, int(window)) if sliding and window else length


def plan_layout(config: dict[str, Any], structure: dict[str, Any]) -> Layout:
    """The GGUF layout of a (compressed) Llama-family model, or ExportRefused naming what to change."""
    model_type = config.get("model_type")
    family = FAMILIES.get(str(model_type))
    if family is None:
        raise ExportRefused(
            f"model_type {model_type!r} is not exported to GGUF: the llama.cpp export takes text decoders "
            f"of model_type {', '.join(FAMILIES)}"
        )
    if structure.get("ffn_rank"):
        raise ExportRefused(
            f"{len(structure['ffn_rank'])} FFN projections are low-rank factorised, which llama.cpp cannot "
            "express: compress with ffn=width (or auto) to export to llama.cpp"
        )
    if config.get("hidden_act", "silu") != "silu":
        raise ExportRefused(f"hidden_act {config.get('hidden_act')!r}: llama.cpp's Llama blocks use silu")
    layers = int(config["num_hidden_layers"])
    if layers > MAX_LAYERS:
        raise ExportRefused(f"{layers} layers: llama.cpp reads at most {MAX_LAYERS}")
    heads = int(config["num_attention_heads"])
    kv_heads = int(config.get("num_key_value_heads") or heads)
    head_dim = int(config.get("head_dim") or config["hidden_size"] // heads)
    group = heads // kv_heads
    kept = _layer_values(structure.get("attention", {}), ATTENTION, layers, "attention block")
    widths = _layer_values(structure.get("ffn_width", {}), FFN, layers, "FFN")
    layout = Layout(
        model_type=str(model_type),
        arch=family.uniform_arch,
        hidden=int(config["hidden_size"]),
        head_dim=head_dim,
        heads=tuple(len(kept[i]) if i in kept else heads for i in range(layers)),
        kv_heads=tuple(len({h // group for h in kept[i]}) if i in kept else kv_heads for i in range(layers)),
        ffn=tuple(int(widths.get(i, config["intermediate_size"])) for i in range(layers)),
        vocab_size=int(config["vocab_size"]),
        context_length=_context_length(config),
        rms_eps=float(config.get("rms_norm_eps", 1e-6)),
        rope=_rope(config),
        tied=bool(config.get("tie_word_embeddings", False)),
    )
    if any(h % kv for h, kv in zip(layout.heads, layout.kv_heads, strict=True)):
        raise ExportRefused("a layer keeps query heads that are not a multiple of its KV heads")
    if layout.rope.kind == "llama3" and family.uniform_arch not in NORM_ROPE_ARCHS:
        raise ExportRefused(f"llama3 rope scaling is not read by llama.cpp's {family.uniform_arch} architecture")
    if layout.uniform and not (family.full_width_only and layout.heads[0] * head_dim != layout.hidden):
        return layout
    if family.variable_arch is None:  # (every family that is full_width_only has a variable_arch)
        raise ExportRefused(
            f"llama.cpp's {family.uniform_arch} architecture reads one head count and FFN length for every "
            "layer: compress with shape=uniform to export to llama.cpp"
        )
    return Layout(**{**layout.__dict__, "arch": family.variable_arch})
