"""Everything the GGUF export decides before touching weights: layout and vocabulary, or a refusal."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from infoprune_core.artifacts import MANIFEST, read_manifest
from infoprune_core.export.layout import Layout, plan_layout
from infoprune_core.export.tokenizer import Vocabulary, read_vocabulary
from infoprune_core.modeling import read_config


@dataclass(frozen=True)
class ExportPlan:
    layout: Layout
    vocabulary: Vocabulary
    name: str


def plan_export(directory: Path, document: dict[str, Any] | None = None) -> ExportPlan:
    """The plan for an artifact, or for a plain model folder (no infoprune.json: nothing was cut).

    `document` is the artifact's manifest when the caller has it (while the artifact is being written).
    Raises ExportRefused naming the constraint when llama.cpp cannot express the model.
    """
    directory = Path(directory)
    if document is None and (directory / MANIFEST).is_file():
        document = read_manifest(directory)
    if document is None:
        config, structure = read_config(directory), {}
    else:
        config, structure = document.get("source_config") or read_config(directory), document.get("structure", {})
    layout = plan_layout(config, structure)
    vocabulary = read_vocabulary(directory, layout.vocab_size)
    name = str(config.get("_name_or_path") or config.get("_model_name_or_path") or directory.name)
    return ExportPlan(layout=layout, vocabulary=vocabulary, name=name)
