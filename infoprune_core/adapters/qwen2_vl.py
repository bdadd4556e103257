"""Qwen2-VL and Qwen2.5-VL: a ViT whose blocks take the patches of every image as one flat sequence
(fused qkv linear, per-image attention; Qwen2.5 alternates windowed and full attention and has gated
FFNs), a patch merger, and a Qwen2 decoder with M-RoPE (3-D position ids computed from the image
grids and the multimodal token types).

Their processors load a video processor, which needs torchvision: inputs are built from the folder's
image processor and tokenizer instead. A prompt's image is `<|vision_start|><|image_pad|><|vision_end|>`,
the pad repeated once per merged patch of that image (grid t*h*w / merge_size^2), and
`mm_token_type_ids` marks the image tokens, as the model's M-RoPE needs.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import transformers
from torch import nn

from infoprune_core.adapters.base import (
    AttentionSite,
    FFNSite,
    Part,
    StackAdapter,
    find_attention_sites,
    find_ffn_sites,
)
from infoprune_core.adapters.composite import CompositeAdapter, Tower
from infoprune_core.adapters.llama import LlamaAdapter

IMAGE_PAD = "<|image_pad|>"
PLACEHOLDER = f"<|vision_start|>{IMAGE_PAD}<|vision_end|>"
FFN_LAYOUTS: tuple[tuple[tuple[str, ...], str], ...] = ((("fc1",), "fc2"), (("gate_proj", "up_proj"), "down_proj"))


class QwenVisionAdapter(StackAdapter):
    """The vision blocks: attn.qkv (q, k, v row blocks of one linear) and attn.proj; fc1/fc2 or gated MLPs."""

    part = "vision"
    projections = ("qkv", "qkv", "qkv", "proj")

    def sites_under(self, model: nn.Module, root: str, part: Part) -> tuple[list[AttentionSite], list[FFNSite]]:
        attention = find_attention_sites(model, root, part, self.projections)
        for inputs, output in FFN_LAYOUTS:
            ffn = [site for site in find_ffn_sites(model, root, part, inputs, output) if ".blocks." in site.name]
            if ffn:
                return attention, ffn
        return attention, []


class QwenVisionInputs:
    """A processor of images and prompts for Qwen2(.5)-VL, from its image processor and tokenizer."""

    image_token = PLACEHOLDER

    def __init__(self, image_processor: Any, tokenizer: Any) -> None:
        self.image_processor = image_processor
        self.tokenizer = tokenizer
        self.merge = int(getattr(image_processor, "merge_size", 2))
        self.pad_id = tokenizer.convert_tokens_to_ids(IMAGE_PAD)

    def __call__(self, images: Sequence[Any], text: Sequence[str], **kwargs: Any) -> dict[str, torch.Tensor]:
        vision = dict(self.image_processor(images=list(images), return_tensors="pt"))
        counts = iter((vision["image_grid_thw"].prod(-1) // self.merge**2).tolist())
        expanded = []
        for prompt in text:
            pieces = prompt.split(IMAGE_PAD)
            expanded.append("".join(p + IMAGE_PAD * next(counts) for p in pieces[:-1]) + pieces[-1])
        tokens = dict(self.tokenizer(expanded, padding=True, return_tensors="pt"))
        tokens["mm_token_type_ids"] = (tokens["input_ids"] == self.pad_id).int()
        return {**tokens, **vision}


class Qwen2VLAdapter(CompositeAdapter):
    model_types = ("qwen2_vl", "qwen2_5_vl")
    projectors = ("merger",)

    def towers(self, model: nn.Module) -> tuple[Tower, ...]:
        return (Tower("visual", "vision", QwenVisionAdapter()), Tower("language_model", "language", LlamaAdapter()))

    def load_processor(self, directory: Path) -> Any:
        return QwenVisionInputs(
            transformers.AutoImageProcessor.from_pretrained(directory, local_files_only=True),
            transformers.AutoTokenizer.from_pretrained(directory, local_files_only=True),
        )

    def image_placeholder(self, processor: Any) -> str | None:
        return PLACEHOLDER
