from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image, ImageDraw

from tests.core.tiny_models import FAMILIES, IMAGE_FAMILIES, save_with_processor


@pytest.fixture(autouse=True, scope="session")
def _one_thread() -> None:
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def model_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("models")
    return {name: save_with_processor(factory(), root / name) for name, factory in FAMILIES.items()}


@pytest.fixture(scope="session")
def shapes_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small image+question JSONL set with answers, as users would bring."""
    root = tmp_path_factory.mktemp("shapes")
    (root / "images").mkdir()
    generator = torch.Generator().manual_seed(0)
    colors = ["red", "blue", "green"]
    lines = []
    for index in range(24):
        color = colors[index % 3]
        image = Image.new("RGB", (32, 32), (200, 200, 200))
        x, y = (int(v) for v in torch.randint(0, 16, (2,), generator=generator))
        ImageDraw.Draw(image).ellipse([x, y, x + 14, y + 14], fill=color)
        image.save(root / "images" / f"{index}.png")
        lines.append({"image": f"images/{index}.png", "text": "<image> what color is the shape ?", "answer": color})
    path = root / "set.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def calibration_for(family: str, shapes: Path) -> str | None:
    """Vision families calibrate on images; text families use the shipped text set."""
    return str(shapes) if family in IMAGE_FAMILIES else None
