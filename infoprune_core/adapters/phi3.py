"""Phi-3 decoders: one fused qkv_proj (q rows, then k rows, then v rows; grouped-query) and one fused
gate_up_proj (gate rows, then up rows).

The attention module reads its query head count from the model config, which all layers share:
cutting a layer's heads gives that layer's attention module its own config copy with its counts.
"""

from __future__ import annotations

from infoprune_core.adapters.decoder import DecoderAdapter


class Phi3Adapter(DecoderAdapter):
    model_types = ("phi3",)
    projections = ("qkv_proj", "qkv_proj", "qkv_proj", "o_proj")
    ffn_inputs = ("gate_up_proj",)
    ffn_output = "down_proj"
    ffn_stacked = 2
    config_head_counts = True
