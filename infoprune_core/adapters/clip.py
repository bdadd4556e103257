"""CLIP and SigLIP vision towers (pre-norm ViT encoders with q/k/v/out projections and fc1/fc2 MLPs)."""

from __future__ import annotations

from torch import nn

from infoprune_core.adapters.base import StackAdapter


class ClipVisionAdapter(StackAdapter):
    model_types = ("clip_vision_model", "siglip_vision_model")
    modality = "vision"
    part = "vision"
    projections = ("q_proj", "k_proj", "v_proj", "out_proj")
    ffn_inputs = ("fc1",)
    ffn_output = "fc2"

    def stack_root(self, model: nn.Module, root: str) -> str:
        """The encoder layer stack under `root`, leaving out heads such as SigLIP's pooling head."""
        base = model.get_submodule(root) if root else model
        for name, _ in base.named_modules():
            if name.endswith("encoder") and name.count(".") <= 2:
                return f"{root}.{name}" if root else name
        raise ValueError(f"no encoder found under {root or 'the model'}")
