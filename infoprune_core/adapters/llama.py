"""LLaMA-family decoders (Llama, Qwen2, Mistral): grouped-query attention, gated SiLU FFN."""

from __future__ import annotations

from infoprune_core.adapters.base import StackAdapter


class LlamaAdapter(StackAdapter):
    model_types = ("llama", "qwen2", "mistral")
    modality = "text"
    part = "language"
    projections = ("q_proj", "k_proj", "v_proj", "o_proj")
    ffn_inputs = ("gate_proj", "up_proj")
    ffn_output = "down_proj"
