"""Dual encoders: CLIP, SigLIP and SigLIP 2 image and text towers side by side.

The vision tower is the vision part and the text tower the language part (its tokens carry a padding
mask; CLIP's also a causal one, which the walk captures). The projections into the shared space
(CLIP's visual and text projections, SigLIP's text head) and the logit scale are the projector;
SigLIP's attention-pooling vision head is not a stack of layers and stays. Distillation and fidelity
compare the image and text embeddings, which the contrastive logits are made of. Captions carry no
image token. Head counts are derived from hidden_size in these configs, so a result with cut heads
needs load_compressed.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from infoprune_core.adapters.clip import ClipVisionAdapter
from infoprune_core.adapters.composite import CompositeAdapter, Tower


class DualEncoderAdapter(CompositeAdapter):
    model_types = ("clip", "siglip", "siglip2")
    projectors = ("visual_projection", "text_projection", "head")
    rest = "projector"

    def towers(self, model: nn.Module) -> tuple[Tower, ...]:
        layers = ClipVisionAdapter()
        return (Tower("vision_model", "vision", layers), Tower("text_model", "language", layers))

    def projector(self, model: nn.Module) -> str | None:
        return None  # two projections, no single module between the towers

    def image_placeholder(self, processor: Any) -> str | None:
        return None

    def read_output(self, output: Any) -> tuple[torch.Tensor, bool]:
        return torch.cat([output.image_embeds, output.text_embeds]).float(), False
