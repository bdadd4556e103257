"""Model-family adapters, found from a config's `model_type`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from infoprune_core.adapters.base import AttentionSite, FFNSite, ModelAdapter, Part
from infoprune_core.adapters.bert import BertAdapter
from infoprune_core.adapters.clip import ClipVisionAdapter
from infoprune_core.adapters.dinov2 import Dinov2VisionAdapter
from infoprune_core.adapters.dual import DualEncoderAdapter
from infoprune_core.adapters.idefics3 import Idefics3Adapter
from infoprune_core.adapters.llama import LlamaAdapter
from infoprune_core.adapters.llava import LlavaAdapter
from infoprune_core.adapters.paligemma import Gemma3Adapter, PaliGemmaAdapter
from infoprune_core.adapters.phi3 import Phi3Adapter
from infoprune_core.adapters.qwen2_vl import Qwen2VLAdapter
from infoprune_core.errors import UnsupportedModelError

ADAPTERS: tuple[type[ModelAdapter], ...] = (
    LlamaAdapter,
    Phi3Adapter,
    ClipVisionAdapter,
    Dinov2VisionAdapter,
    BertAdapter,
    LlavaAdapter,
    PaliGemmaAdapter,
    Gemma3Adapter,
    Idefics3Adapter,
    Qwen2VLAdapter,
    DualEncoderAdapter,
)
SUPPORTED_MODEL_TYPES: tuple[str, ...] = tuple(sorted(t for a in ADAPTERS for t in a.model_types))


def adapter_class_for(model_type: str) -> type[ModelAdapter]:
    for adapter_class in ADAPTERS:
        if model_type in adapter_class.model_types:
            return adapter_class
    raise UnsupportedModelError(
        f"model_type {model_type!r} is not supported; supported: {', '.join(SUPPORTED_MODEL_TYPES)}"
    )


def adapter_for(model_type: str) -> ModelAdapter:
    """The adapter of a `model_type`."""
    return adapter_class_for(model_type)()


def adapter_for_config(config: Mapping[str, Any]) -> ModelAdapter:
    """The adapter of a config, once it has checked the parts the config holds (towers, language model)."""
    adapter_class = adapter_class_for(str(config["model_type"]))
    adapter_class.check(config)
    return adapter_class()


__all__ = [
    "ADAPTERS",
    "SUPPORTED_MODEL_TYPES",
    "AttentionSite",
    "FFNSite",
    "ModelAdapter",
    "Part",
    "adapter_for",
    "adapter_for_config",
]
