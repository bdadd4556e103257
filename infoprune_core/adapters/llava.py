"""LLaVA: a CLIP/SigLIP/DINOv2 vision tower, a projector and a LLaMA-family language model."""

from __future__ import annotations

from torch import nn

from infoprune_core.adapters.base import AttentionSite, FFNSite, ModelAdapter, Part, StackAdapter
from infoprune_core.adapters.clip import ClipVisionAdapter
from infoprune_core.adapters.dinov2 import Dinov2VisionAdapter
from infoprune_core.adapters.llama import LlamaAdapter
from infoprune_core.errors import UnsupportedModelError

VISION_TOWERS: tuple[type[StackAdapter], ...] = (ClipVisionAdapter, Dinov2VisionAdapter)
VISION_TOWER_TYPES: tuple[str, ...] = tuple(t for adapter in VISION_TOWERS for t in adapter.model_types)


def vision_tower_adapter(model_type: str) -> StackAdapter:
    """The adapter of a LLaVA vision tower's `model_type`."""
    for adapter_class in VISION_TOWERS:
        if model_type in adapter_class.model_types:
            return adapter_class()
    raise UnsupportedModelError(
        f"LLaVA with a {model_type!r} vision tower is not supported; supported towers: {', '.join(VISION_TOWER_TYPES)}"
    )


def _module_path(model: nn.Module, suffix: str) -> str:
    """Shortest module path ending in `suffix` (e.g. "model.vision_tower")."""
    names = [name for name, _ in model.named_modules() if name.split(".")[-1] == suffix]
    if not names:
        raise ValueError(f"LLaVA model has no module named {suffix!r}")
    return min(names, key=len)


class LlavaAdapter(ModelAdapter):
    model_types = ("llava",)
    modality = "vision_text"

    def _paths(self, model: nn.Module) -> tuple[str, str, str]:
        return (
            _module_path(model, "vision_tower"),
            _module_path(model, "multi_modal_projector"),
            _module_path(model, "language_model"),
        )

    def projector(self, model: nn.Module) -> str | None:
        return self._paths(model)[1]

    def part_prefixes(self, model: nn.Module) -> dict[str, Part]:
        vision, projector, _ = self._paths(model)
        # The language model, embeddings and lm_head are everything that is not vision or projector.
        return {"": "language", vision: "vision", projector: "projector"}

    def _sites(self, model: nn.Module) -> tuple[list[AttentionSite], list[FFNSite]]:
        vision, _, language = self._paths(model)
        tower = model.get_submodule(vision)
        tower_type = str(getattr(getattr(tower, "config", None), "model_type", "clip_vision_model"))
        vision_attention, vision_ffn = vision_tower_adapter(tower_type).sites_under(model, vision, "vision")
        language_attention, language_ffn = LlamaAdapter().sites_under(model, language, "language")
        return vision_attention + language_attention, vision_ffn + language_ffn

    def attention_sites(self, model: nn.Module) -> list[AttentionSite]:
        return self._sites(model)[0]

    def ffn_sites(self, model: nn.Module) -> list[FFNSite]:
        return self._sites(model)[1]
