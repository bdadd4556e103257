"""The shipped demo VLM, its processor and its data splits."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoProcessor, AutoTokenizer, LlavaForConditionalGeneration, LlavaProcessor

from infoprune_core.demo import demo_calibration_path, demo_eval_path, demo_model_dir
from infoprune_core.demo.dataset import read_jsonl
from infoprune_core.demo.model import NUM_IMAGE_TOKENS, accuracy, encode
from infoprune_core.demo.shapes import ANSWERS, make_split


@pytest.fixture(scope="module")
def model() -> LlavaForConditionalGeneration:
    torch.set_num_threads(1)
    return LlavaForConditionalGeneration.from_pretrained(demo_model_dir()).eval()


@pytest.fixture(scope="module")
def processor() -> LlavaProcessor:
    return AutoProcessor.from_pretrained(demo_model_dir())


def test_model_files_are_small_safetensors_only() -> None:
    files = {p.name for p in demo_model_dir().iterdir()}
    assert "model.safetensors" in files and "config.json" in files
    assert not [name for name in files if name.endswith((".bin", ".pt", ".pth", ".pkl"))]
    assert (demo_model_dir() / "model.safetensors").stat().st_size < 18_000_000


def test_model_loads_with_gqa_and_image_token(model: LlavaForConditionalGeneration) -> None:
    tokenizer = AutoTokenizer.from_pretrained(demo_model_dir())
    text = model.config.get_text_config()
    assert text.num_key_value_heads < text.num_attention_heads
    assert model.config.image_token_id == tokenizer.convert_tokens_to_ids("<image>")
    assert tokenizer.padding_side == "left"


def test_processor_expands_image_token_and_left_pads(processor: LlavaProcessor) -> None:
    samples = make_split(seed=7, size=8)
    inputs = encode(processor, samples)
    assert set(inputs) == {"input_ids", "attention_mask", "pixel_values"}
    assert inputs["pixel_values"].shape == (8, 3, 64, 64)
    image_token_id = processor.tokenizer.convert_tokens_to_ids("<image>")
    assert ((inputs["input_ids"] == image_token_id).sum(1) == NUM_IMAGE_TOKENS).all()
    assert (inputs["input_ids"][:, -1] == processor.tokenizer.convert_tokens_to_ids(":")).all()
    assert (inputs["attention_mask"][:, -1] == 1).all()
    assert (inputs["input_ids"] != processor.tokenizer.unk_token_id).all()


def test_generator_is_deterministic_per_seed() -> None:
    def fingerprint(seed: int) -> list[tuple[bytes, str, str]]:
        return [(s.image.tobytes(), s.question, s.answer) for s in make_split(seed, 20)]

    assert fingerprint(5) == fingerprint(5)
    assert fingerprint(5) != fingerprint(6)
    assert all(s.answer in ANSWERS and np.asarray(s.image).shape == (64, 64, 3) for s in make_split(5, 20))


@pytest.mark.parametrize(("path", "size"), [(demo_calibration_path(), 256), (demo_eval_path(), 400)])
def test_jsonl_image_paths_are_relative_and_inside(path: Path, size: int) -> None:
    records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert len(records) == size
    folder = path.parent.resolve()
    for record in records:
        image = Path(record["image"])
        assert not image.is_absolute()
        resolved = (folder / image).resolve()
        assert resolved.is_relative_to(folder) and resolved.is_file()
        assert record["text"].startswith("<image> ") and record["answer"] in ANSWERS


def test_held_out_accuracy(model: LlavaForConditionalGeneration, processor: LlavaProcessor) -> None:
    samples = read_jsonl(demo_eval_path())[:100]
    assert accuracy(model, processor, samples, batch_size=50) >= 0.9
