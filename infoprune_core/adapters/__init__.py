"""Model-family adapters, found from a config's `model_type`."""

from __future__ import annotations

from infoprune_core.adapters.base import AttentionSite, FFNSite, ModelAdapter, Part
from infoprune_core.adapters.bert import BertAdapter
from infoprune_core.adapters.clip import ClipVisionAdapter
from infoprune_core.adapters.dinov2 import Dinov2VisionAdapter
from infoprune_core.adapters.llama import LlamaAdapter
from infoprune_core.adapters.llava import VISION_TOWER_TYPES, LlavaAdapter
from infoprune_core.adapters.phi3 import Phi3Adapter
from infoprune_core.errors import UnsupportedModelError

ADAPTERS: tuple[type[ModelAdapter], ...] = (
    LlamaAdapter,
    Phi3Adapter,
    ClipVisionAdapter,
    Dinov2VisionAdapter,
    BertAdapter,
    LlavaAdapter,
)
SUPPORTED_MODEL_TYPES: tuple[str, ...] = tuple(sorted(t for a in ADAPTERS for t in a.model_types))


def adapter_for(model_type: str, vision_model_type: str | None = None) -> ModelAdapter:
    """The adapter of a `model_type`; for LLaVA the vision tower's type must be supported too."""
    for adapter_class in ADAPTERS:
        if model_type in adapter_class.model_types:
            if vision_model_type is not None and vision_model_type not in VISION_TOWER_TYPES:
                raise UnsupportedModelError(
                    f"LLaVA with a {vision_model_type!r} vision tower is not supported; supported towers: "
                    + ", ".join(VISION_TOWER_TYPES)
                )
            return adapter_class()
    raise UnsupportedModelError(
        f"model_type {model_type!r} is not supported; supported: {', '.join(SUPPORTED_MODEL_TYPES)}"
    )


__all__ = [
    "ADAPTERS",
    "SUPPORTED_MODEL_TYPES",
    "AttentionSite",
    "FFNSite",
    "ModelAdapter",
    "Part",
    "adapter_for",
]
