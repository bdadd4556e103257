"""LLaMA-family decoders (Llama, Qwen2, Mistral): grouped-query attention, gated SiLU FFN."""

from __future__ import annotations

from torch import nn

from infoprune_core.adapters.base import (
    AttentionSite,
    FFNSite,
    ModelAdapter,
    Part,
    find_attention_sites,
    find_ffn_sites,
)

LLAMA_PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj")
LLAMA_FFN = (("gate_proj", "up_proj"), "down_proj")


def llama_sites(model: nn.Module, root: str, part: Part) -> tuple[list[AttentionSite], list[FFNSite]]:
    """Attention and FFN sites of a LLaMA-style decoder stack found under `root`."""
    inputs, output = LLAMA_FFN
    return (
        find_attention_sites(model, root, part, LLAMA_PROJECTIONS),
        find_ffn_sites(model, root, part, inputs, output),
    )


class LlamaAdapter(ModelAdapter):
    model_types = ("llama", "qwen2", "mistral")
    modality = "text"

    def part_prefixes(self, model: nn.Module) -> dict[str, Part]:
        return {"": "language"}

    def attention_sites(self, model: nn.Module) -> list[AttentionSite]:
        return llama_sites(model, "", "language")[0]

    def ffn_sites(self, model: nn.Module) -> list[FFNSite]:
        return llama_sites(model, "", "language")[1]
