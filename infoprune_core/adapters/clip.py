"""CLIP and SigLIP vision towers (pre-norm ViT encoders with q/k/v/out projections and fc1/fc2 MLPs)."""

from __future__ import annotations

from torch import nn

from infoprune_core.adapters.base import (
    AttentionSite,
    FFNSite,
    ModelAdapter,
    Part,
    find_attention_sites,
    find_ffn_sites,
)

CLIP_PROJECTIONS = ("q_proj", "k_proj", "v_proj", "out_proj")


def clip_encoder_root(model: nn.Module, root: str) -> str:
    """Path of the encoder layer stack under `root`, leaving out heads such as SigLIP's pooling head."""
    for name, _ in model.get_submodule(root).named_modules() if root else model.named_modules():
        if name.endswith("encoder") and name.count(".") <= 2:
            return f"{root}.{name}" if root else name
    raise ValueError(f"no encoder found under {root or 'the model'}")


def clip_sites(model: nn.Module, root: str, part: Part) -> tuple[list[AttentionSite], list[FFNSite]]:
    encoder = clip_encoder_root(model, root)
    return (
        find_attention_sites(model, encoder, part, CLIP_PROJECTIONS),
        find_ffn_sites(model, encoder, part, ("fc1",), "fc2"),
    )


class ClipVisionAdapter(ModelAdapter):
    model_types = ("clip_vision_model", "siglip_vision_model")
    modality = "vision"

    def part_prefixes(self, model: nn.Module) -> dict[str, Part]:
        return {"": "vision"}

    def attention_sites(self, model: nn.Module) -> list[AttentionSite]:
        return clip_sites(model, "", "vision")[0]

    def ffn_sites(self, model: nn.Module) -> list[FFNSite]:
        return clip_sites(model, "", "vision")[1]
