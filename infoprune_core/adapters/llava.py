"""LLaVA: a CLIP/SigLIP/DINOv2 vision tower, a two-layer MLP projector and a LLaMA-like language model.

The processor expands each `<image>` into the tower's patch tokens; the vision features may come from
an inner layer (`vision_feature_layer`), in which case the last tower layers still run and count.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from infoprune_core.adapters.base import StackAdapter
from infoprune_core.adapters.clip import ClipVisionAdapter
from infoprune_core.adapters.composite import CompositeAdapter, Tower, module_path, require
from infoprune_core.adapters.dinov2 import Dinov2VisionAdapter
from infoprune_core.adapters.llama import LlamaAdapter

VISION_TOWERS: tuple[type[StackAdapter], ...] = (ClipVisionAdapter, Dinov2VisionAdapter)
VISION_TOWER_TYPES: tuple[str, ...] = tuple(t for adapter in VISION_TOWERS for t in adapter.model_types)


def vision_tower_adapter(model_type: str) -> StackAdapter:
    """The layer family of a vision tower's `model_type`."""
    require("vision tower", model_type, VISION_TOWER_TYPES)
    return next(adapter() for adapter in VISION_TOWERS if model_type in adapter.model_types)


class LlavaAdapter(CompositeAdapter):
    model_types = ("llava",)
    projectors = ("multi_modal_projector",)

    @classmethod
    def check(cls, config: Mapping[str, Any]) -> None:
        require("vision tower", cls.sub_config(config, "vision_config").get("model_type"), VISION_TOWER_TYPES)
        require("language model", cls.sub_config(config, "text_config").get("model_type"), LlamaAdapter.model_types)

    def towers(self, model: nn.Module) -> tuple[Tower, ...]:
        tower = model.get_submodule(module_path(model, "vision_tower"))
        tower_type = str(getattr(getattr(tower, "config", None), "model_type", "clip_vision_model"))
        return (
            Tower("vision_tower", "vision", vision_tower_adapter(tower_type)),
            Tower("language_model", "language", LlamaAdapter()),
        )
