"""Models made of several towers: a VLM's vision tower, projector and language model, or a dual
encoder's vision and text towers. Each tower is a stack of one layer family, found by name."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from torch import nn

from infoprune_core.adapters.base import AttentionSite, FFNSite, ModelAdapter, Part, StackAdapter
from infoprune_core.errors import UnsupportedModelError


@dataclass(frozen=True)
class Tower:
    """A tower: the last component of its module path (the shortest path ending so is taken), its part,
    and the layer family of its blocks."""

    name: str
    part: Part
    layers: StackAdapter


def find_module_path(model: nn.Module, suffix: str) -> str | None:
    """Shortest module path whose last component is `suffix` (e.g. "model.vision_tower"), if any."""
    names = [name for name, _ in model.named_modules() if name.split(".")[-1] == suffix]
    return min(names, key=len) if names else None


def module_path(model: nn.Module, suffix: str) -> str:
    found = find_module_path(model, suffix)
    if found is None:
        raise ValueError(f"{type(model).__name__} has no module named {suffix!r}")
    return found


def require(kind: str, model_type: Any, supported: tuple[str, ...]) -> None:
    if model_type not in supported:
        raise UnsupportedModelError(
            f"a {kind} of model_type {model_type!r} is not supported here; supported: {', '.join(supported)}"
        )


class CompositeAdapter(ModelAdapter):
    """Subclasses list their `towers` in forward order and name their `projectors`; modules outside
    every tower and projector (embeddings, output heads) belong to `rest`. A projector name a model
    does not have is skipped (families differ in their heads)."""

    modality = "vision_text"
    projectors: tuple[str, ...] = ()
    rest: Part = "language"

    def towers(self, model: nn.Module) -> tuple[Tower, ...]:
        raise NotImplementedError

    @staticmethod
    def sub_config(config: Mapping[str, Any], key: str) -> Mapping[str, Any]:
        value = config.get(key)
        return value if isinstance(value, Mapping) else {}

    def _projector_paths(self, model: nn.Module) -> list[str]:
        return [path for name in self.projectors if (path := find_module_path(model, name)) is not None]

    def projector(self, model: nn.Module) -> str | None:
        paths = self._projector_paths(model)
        return paths[0] if paths else None

    def part_prefixes(self, model: nn.Module) -> dict[str, Part]:
        prefixes: dict[str, Part] = {"": self.rest}
        for tower in self.towers(model):
            prefixes[module_path(model, tower.name)] = tower.part
        for path in self._projector_paths(model):
            prefixes[path] = "projector"
        return prefixes

    def _sites(self, model: nn.Module) -> tuple[list[AttentionSite], list[FFNSite]]:
        attention: list[AttentionSite] = []
        ffn: list[FFNSite] = []
        for tower in self.towers(model):
            found = tower.layers.sites_under(model, module_path(model, tower.name), tower.part)
            attention += found[0]
            ffn += found[1]
        return attention, ffn

    def attention_sites(self, model: nn.Module) -> list[AttentionSite]:
        return self._sites(model)[0]

    def ffn_sites(self, model: nn.Module) -> list[FFNSite]:
        return self._sites(model)[1]
