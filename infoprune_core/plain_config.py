"""When compression is uniform, express it in a stock config so plain `from_pretrained` loads it.

Only LLaMA-family configs can say per-model head counts with an explicit `head_dim`; CLIP, SigLIP
and BERT derive head_dim from hidden_size / heads, so a pruned one needs `load_compressed`.
"""

from __future__ import annotations

from typing import Any

import transformers

PLAIN_MODEL_TYPES = ("llama", "qwen2", "mistral", "qwen3", "gemma", "gemma2", "gemma3_text", "phi3")


def plain_config(config: dict[str, Any], structure: dict[str, Any], layers: int) -> dict[str, Any] | None:
    """The source config rewritten for the compressed shapes, or None when that cannot be expressed."""
    if config.get("model_type") not in PLAIN_MODEL_TYPES or structure.get("ffn_rank"):
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
