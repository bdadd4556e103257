"""LLaMA-like decoders: grouped-query attention with q/k/v/o projections and a gated SiLU/GELU FFN.

Llama, Qwen2, Mistral and Qwen3 (per-head q/k RMSNorms over head_dim, shared by all heads, so whole
heads can go), Gemma 2 and Gemma 3 text (pre- and post-FFN norms: the re-fit matches down_proj's own
output, whatever norm follows; alternating sliding-window and global layers get their own masks and
rotary embeddings, which the walk captures per layer; attention logit soft-capping). Every block
reshapes with head_dim, so removing whole-head rows and columns is enough; configs carry head_dim,
so uniform results are stock configs.
"""

from __future__ import annotations

from infoprune_core.adapters.decoder import DecoderAdapter


class LlamaAdapter(DecoderAdapter):
    model_types = ("llama", "qwen2", "mistral", "qwen3", "gemma", "gemma2", "gemma3_text")
    projections = ("q_proj", "k_proj", "v_proj", "o_proj")
    ffn_inputs = ("gate_proj", "up_proj")
    ffn_output = "down_proj"
