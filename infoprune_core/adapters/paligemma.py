"""PaliGemma (a SigLIP tower, a linear projector and a Gemma decoder) and Gemma 3 (a SigLIP tower, an
average-pooling projector and a Gemma 3 decoder with sliding-window layers).

PaliGemma attends bidirectionally over the image and the prefix (its processor's token_type_ids
build that mask, which the walk captures with every layer's arguments). Gemma 3's prompts mark an
image with the begin-of-image token, which its processor expands into the image's soft tokens.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from infoprune_core.adapters.clip import ClipVisionAdapter
from infoprune_core.adapters.composite import CompositeAdapter, Tower, require
from infoprune_core.adapters.llama import LlamaAdapter


class PaliGemmaAdapter(CompositeAdapter):
    model_types = ("paligemma",)
    projectors = ("multi_modal_projector",)

    @classmethod
    def check(cls, config: Mapping[str, Any]) -> None:
        require("vision tower", cls.sub_config(config, "vision_config").get("model_type"), ("siglip_vision_model",))
        require("language model", cls.sub_config(config, "text_config").get("model_type"), LlamaAdapter.model_types)

    def towers(self, model: nn.Module) -> tuple[Tower, ...]:
        return (
            Tower("vision_tower", "vision", ClipVisionAdapter()),
            Tower("language_model", "language", LlamaAdapter()),
        )


class Gemma3Adapter(PaliGemmaAdapter):
    """Gemma 3's processor takes one list of images per prompt and marks each with the begin-of-image token."""

    model_types = ("gemma3",)
    images_per_prompt = True

    def image_placeholder(self, processor: Any) -> str | None:
        return getattr(processor, "boi_token", None)
