"""Idefics3 and SmolVLM: a SigLIP-like vision tower, a pixel-shuffle connector and a Llama decoder.

Images may be split into tiles plus a global view; the processor writes each image's tile and
global tokens into the prompt. SmolVLM's processor needs torchvision's video processor: without it,
Idefics3's processor is built on SmolVLM's image processor and tokenizer, since both write the same
image prompt (tile rows of `<fake_token_around_image><row_i_col_j><image>...`, then the global view).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import transformers
from torch import nn

from infoprune_core.adapters.clip import ClipVisionAdapter
from infoprune_core.adapters.composite import CompositeAdapter, Tower, require
from infoprune_core.adapters.llama import LlamaAdapter

PROCESSOR_SETTINGS = ("image_seq_len", "chat_template")


class Idefics3Adapter(CompositeAdapter):
    model_types = ("idefics3", "smolvlm")
    projectors = ("connector",)

    @classmethod
    def check(cls, config: Mapping[str, Any]) -> None:
        require("language model", cls.sub_config(config, "text_config").get("model_type"), LlamaAdapter.model_types)

    def towers(self, model: nn.Module) -> tuple[Tower, ...]:
        return (
            Tower("vision_model", "vision", ClipVisionAdapter()),
            Tower("text_model", "language", LlamaAdapter()),
        )

    def load_processor(self, directory: Path) -> Any:
        try:
            return super().load_processor(directory)
        except (ImportError, AttributeError, OSError, ValueError):
            if json.loads((directory / "config.json").read_text()).get("model_type") != "smolvlm":
                raise
        path = directory / "processor_config.json"
        settings = json.loads(path.read_text()) if path.exists() else {}
        return transformers.Idefics3Processor(
            image_processor=transformers.AutoImageProcessor.from_pretrained(directory, local_files_only=True),
            tokenizer=transformers.AutoTokenizer.from_pretrained(directory, local_files_only=True),
            **{key: settings[key] for key in PROCESSOR_SETTINGS if key in settings},
        )
