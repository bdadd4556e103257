"""Decoder-only language models: one stack of layers whose config states head counts, KV heads,
head_dim and FFN width, so uniformly compressed results are stock configs of the original class."""

from __future__ import annotations

from typing import Any

import transformers

from infoprune_core.adapters.base import StackAdapter


class DecoderAdapter(StackAdapter):
    modality = "text"
    part = "language"

    def plain_config(self, config: dict[str, Any], structure: dict[str, Any], layers: int) -> dict[str, Any] | None:
        """The source config with the uniform head counts (head_dim kept explicit) and FFN width."""
        if structure.get("ffn_rank"):
            return None
        attention, widths = structure.get("attention", {}), structure.get("ffn_width", {})
        if (attention and len(attention) != layers) or (widths and len(widths) != layers):
            return None  # some layers were left intact while others were cut
        updated = dict(config)
        if attention:
            counts = {len(kept) for kept in attention.values()}
            groups = {
                len({head // (config["num_attention_heads"] // config["num_key_value_heads"]) for head in kept})
                for kept in attention.values()
            }
            if len(counts) != 1 or len(groups) != 1:
                return None
            updated["head_dim"] = config.get("head_dim") or config["hidden_size"] // config["num_attention_heads"]
            updated["num_attention_heads"] = counts.pop()
            updated["num_key_value_heads"] = groups.pop()
        if widths:
            if len(set(widths.values())) != 1:
                return None
            updated["intermediate_size"] = next(iter(widths.values()))
        try:
            transformers.AutoConfig.for_model(**updated)
        except (ValueError, TypeError):
            return None
        return updated
