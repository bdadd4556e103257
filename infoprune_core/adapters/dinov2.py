"""DINOv2 vision backbones: pre-norm ViT layers with q/k/v/o projections, layer scales and an fc1/fc2 MLP.

Layer scales multiply the attention output projection's result (and the MLP's): they sit after o_proj
and fc2, so removing heads (columns of o_proj) or FFN rank leaves them untouched. The SwiGLU variant
(DINOv2-giant) has a gated gate_proj/up_proj -> down_proj FFN, found by structure too.
"""

from __future__ import annotations

from torch import nn

from infoprune_core.adapters.base import (
    AttentionSite,
    FFNSite,
    Part,
    StackAdapter,
    find_attention_sites,
    find_ffn_sites,
)

# transformers 5 names first; the 4.x layout (attention.attention.query, attention.output.dense) as a fallback.
PROJECTION_LAYOUTS: tuple[tuple[str, str, str, str], ...] = (
    ("q_proj", "k_proj", "v_proj", "o_proj"),
    ("attention.query", "attention.key", "attention.value", "output.dense"),
)
FFN_LAYOUTS: tuple[tuple[tuple[str, ...], str], ...] = (
    (("fc1",), "fc2"),
    (("gate_proj", "up_proj"), "down_proj"),
    (("weights_in",), "weights_out"),
)


class Dinov2VisionAdapter(StackAdapter):
    model_types = ("dinov2",)
    modality = "vision"
    part = "vision"
    projections = PROJECTION_LAYOUTS[0]
    ffn_inputs = FFN_LAYOUTS[0][0]
    ffn_output = FFN_LAYOUTS[0][1]

    def stack_root(self, model: nn.Module, root: str) -> str:
        """The layer stack under `root` (the encoder), leaving out the embeddings and the final norm."""
        base = model.get_submodule(root) if root else model
        for name, _ in base.named_modules():
            if name.endswith("encoder") and name.count(".") <= 2:
                return f"{root}.{name}" if root and name else root or name
        raise ValueError(f"no encoder found under {root or 'the model'}")

    def sites_under(self, model: nn.Module, root: str, part: Part) -> tuple[list[AttentionSite], list[FFNSite]]:
        stack = self.stack_root(model, root)
        attention: list[AttentionSite] = []
        for projections in PROJECTION_LAYOUTS:
            attention = find_attention_sites(model, stack, part, projections)
            if attention:
                break
        ffn: list[FFNSite] = []
        for inputs, output in FFN_LAYOUTS:
            ffn = find_ffn_sites(model, stack, part, inputs, output)
            if ffn:
                break
        return attention, ffn
