"""A small LLaVA-style VLM trained by the project on a procedural shapes task, with its data.

The model answers prompts like "<image> what color is the shape ? answer :" with one word: the
tokenizer pads on the left, so the logits at the last position predict the answer token.
Rebuild everything with `python -m infoprune_core.demo.train`.
"""

from __future__ import annotations

from pathlib import Path

ASSETS_DIR = Path(__file__).parent / "assets"


def demo_model_dir() -> Path:
    """Folder of the trained demo model (config, safetensors, tokenizer and processor)."""
    return ASSETS_DIR / "model"


def demo_calibration_path() -> Path:
    """JSONL of the 256-sample calibration split (image paths relative to its folder)."""
    return ASSETS_DIR / "calibration" / "calibration.jsonl"


def demo_eval_path() -> Path:
    """JSONL of the 400-sample held-out evaluation split (a seed never used for training)."""
    return ASSETS_DIR / "eval" / "eval.jsonl"
