"""Task splits on disk: a JSONL file with one `{"image", "text", "answer"}` object a line.

Image paths are relative to the JSONL file's folder; the PNGs live in `images/` beside it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from PIL import Image

from infoprune_core.demo.shapes import PROMPT_TEMPLATE, Sample


def write_jsonl(samples: Sequence[Sample], path: Path) -> None:
    """Write samples as `path` plus PNGs in `path.parent / "images"`."""
    images = path.parent / "images"
    images.mkdir(parents=True, exist_ok=True)
    lines = []
    for index, sample in enumerate(samples):
        relative = f"images/{index:05d}.png"
        sample.image.save(path.parent / relative, format="PNG", optimize=True)
        lines.append(json.dumps({"image": relative, "text": sample.prompt, "answer": sample.answer}))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _question(prompt: str) -> str:
    prefix, suffix = PROMPT_TEMPLATE.split("{question}")
    return prompt.removeprefix(prefix).removesuffix(suffix)


def read_jsonl(path: Path) -> list[Sample]:
    """Read samples written by `write_jsonl` (images loaded as RGB)."""
    samples = []
    for line in path.read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        with Image.open(path.parent / record["image"]) as image:
            rgb = image.convert("RGB")
        samples.append(Sample(image=rgb, question=_question(record["text"]), answer=record["answer"]))
    return samples
