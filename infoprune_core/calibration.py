"""Calibration and evaluation samples, and how they become model inputs.

A calibration source is a folder of images, or a JSONL file whose lines are
``{"image": "path relative to the file", "text": "prompt"}`` (``{"text": ...}`` alone for text
models); evaluation files add ``"answer"`` (generated text) or ``"label"`` (class index).
"""

from __future__ import annotations

import inspect
import json
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image, UnidentifiedImageError

from infoprune_core.adapters.base import Modality
from infoprune_core.errors import CalibrationError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".gif")
DEMO_IMAGE_TOKEN = "<image>"
MAX_JSONL_BYTES = 512 * 1024 * 1024


@dataclass(frozen=True)
class Sample:
    text: str | None = None
    image: Path | None = None
    answer: str | None = None
    label: int | None = None


def read_samples(path: Path) -> list[Sample]:
    """Samples from a folder of images or a JSONL file; image paths must stay inside its folder."""
    path = Path(path)
    if path.is_dir():
        images = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        samples = [Sample(image=p) for p in images]
    elif path.is_file():
        samples = _read_jsonl(path)
    else:
        raise CalibrationError(f"calibration/evaluation source {path} does not exist")
    if not samples:
        raise CalibrationError(f"{path} contains no samples (expected images or JSONL lines)")
    return samples


def _read_jsonl(path: Path) -> list[Sample]:
    if path.stat().st_size > MAX_JSONL_BYTES:
        raise CalibrationError(f"{path} is larger than {MAX_JSONL_BYTES} bytes")
    root = path.parent.resolve()
    samples = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise CalibrationError(f"{path}:{number}: not valid JSON ({error.msg})") from error
        if not isinstance(record, dict) or not ({"text", "image"} & record.keys()):
            raise CalibrationError(f"{path}:{number}: expected an object with 'text' and/or 'image'")
        image = None
        if record.get("image") is not None:
            image = (root / str(record["image"])).resolve()
            if not image.is_relative_to(root):
                raise CalibrationError(f"{path}:{number}: image path leaves the folder of the JSONL file")
            if not image.is_file():
                raise CalibrationError(f"{path}:{number}: image {record['image']} does not exist")
        label = record.get("label")
        samples.append(
            Sample(
                text=None if record.get("text") is None else str(record["text"]),
                image=image,
                answer=None if record.get("answer") is None else str(record["answer"]),
                label=None if label is None else int(label),
            )
        )
    return samples


def default_text_samples(count: int = 256) -> list[Sample]:
    """Real English prose that ships with Python: paragraphs of standard-library docstrings."""
    import argparse
    import collections
    import csv
    import email
    import functools
    import http.client
    import logging
    import os
    import pathlib
    import subprocess
    import threading
    import unittest
    import urllib.request

    modules = [
        argparse,
        collections,
        csv,
        email,
        functools,
        http.client,
        logging,
        os,
        pathlib,
        subprocess,
        threading,
        unittest,
        urllib.request,
        json,
        random,
        inspect,
    ]
    paragraphs: list[str] = []
    for module in modules:
        # The module and its callables only: which submodules a package exposes as attributes depends
        # on what the process imported before, and the set must not.
        members = [module, *(member for _, member in inspect.getmembers(module) if callable(member))]
        for member in members:
            doc = inspect.getdoc(member)
            for paragraph in (doc or "").split("\n\n"):
                words = paragraph.split()
                if len(words) >= 12 and paragraph[:1].isupper():
                    paragraphs.append(" ".join(words))
    unique = sorted(set(paragraphs))
    random.Random(0).shuffle(unique)
    return [Sample(text=p) for p in unique[:count]]


def default_samples(modality: Modality) -> list[Sample]:
    """The calibration set that ships with the project for a model of `modality`."""
    if modality == "text":
        return default_text_samples()
    from infoprune_core.demo import demo_calibration_path

    samples = read_samples(demo_calibration_path())
    return samples if modality == "vision_text" else [Sample(image=s.image) for s in samples]


class Encoder:
    """Turns samples into the keyword inputs of a model, with its own processor or tokenizer."""

    def __init__(self, processor: Any, modality: Modality, max_text_tokens: int) -> None:
        self.processor = processor
        self.modality = modality
        self.max_text_tokens = max_text_tokens
        self.tokenizer = getattr(processor, "tokenizer", processor)
        if modality != "vision" and getattr(self.tokenizer, "pad_token", None) is None:
            eos = getattr(self.tokenizer, "eos_token", None)
            if eos is None:
                raise CalibrationError("the tokenizer has neither a pad nor an eos token")
            self.tokenizer.pad_token = eos
        if modality != "vision":
            self.tokenizer.padding_side = "left"  # the last position predicts the next token in every row

    def encode(self, samples: Sequence[Sample], with_answers: bool = False) -> dict[str, torch.Tensor]:
        if self.modality == "vision":
            return dict(self.processor(images=[_open(s) for s in samples], return_tensors="pt"))
        texts = [self._text(s, with_answers) for s in samples]
        if self.modality == "text":
            return dict(
                self.tokenizer(
                    texts, padding=True, truncation=True, max_length=self.max_text_tokens, return_tensors="pt"
                )
            )
        images = [_open(s) for s in samples]
        return dict(self.processor(images=images, text=texts, padding=True, return_tensors="pt"))

    def _text(self, sample: Sample, with_answer: bool) -> str:
        image_token = getattr(self.processor, "image_token", None)
        text = sample.text
        if text is None:
            if self.modality == "text":
                raise CalibrationError("a text model needs samples with 'text'")
            text = f"{image_token or DEMO_IMAGE_TOKEN} describe the image ."
        if image_token and image_token != DEMO_IMAGE_TOKEN:
            text = text.replace(DEMO_IMAGE_TOKEN, image_token)
        if with_answer:
            if sample.answer is None:
                raise CalibrationError("evaluation samples need an 'answer' (or a 'label' for classifiers)")
            text = f"{text} {sample.answer}"
        return text

    def answer_lengths(self, samples: Sequence[Sample]) -> list[int]:
        """Number of tokens each sample's answer adds after its prompt."""
        lengths = []
        for sample in samples:
            prompt = self._text(sample, with_answer=False)
            full = self._text(sample, with_answer=True)
            count = len(self.tokenizer(full)["input_ids"]) - len(self.tokenizer(prompt)["input_ids"])
            lengths.append(max(count, 1))
        return lengths


def _open(sample: Sample) -> Image.Image:
    if sample.image is None:
        raise CalibrationError("a vision model needs samples with an 'image'")
    try:
        with Image.open(sample.image) as image:
            return image.convert("RGB")
    except (OSError, UnidentifiedImageError) as error:
        raise CalibrationError(f"cannot read image {sample.image}: {error}") from error


def batched(samples: Sequence[Sample], batch_size: int) -> Iterator[list[Sample]]:
    for start in range(0, len(samples), batch_size):
        yield list(samples[start : start + batch_size])
