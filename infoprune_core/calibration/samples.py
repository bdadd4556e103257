"""Calibration and evaluation samples: what users bring, and the sets that ship with the project.

A calibration source is a folder of images, or a JSONL file whose lines are
``{"image": "path relative to the file", "text": "prompt"}`` (``{"text": ...}`` alone for text
models); evaluation files add ``"answer"`` (generated text) or ``"label"`` (class index).
"""

from __future__ import annotations

import inspect
import json
import random
from dataclasses import dataclass
from pathlib import Path

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


def reference_paragraphs(count: int, min_words: int = 12) -> list[str]:
    """Prose paragraphs of the Python Language Reference, in a fixed order (grammar and code left out)."""
    import pydoc_data.topics

    paragraphs = []
    for name in sorted(pydoc_data.topics.topics):
        for block in pydoc_data.topics.topics[name].split("\n\n"):
            if block[:1].isupper() and not block.startswith(" ") and "::=" not in block and "*****" not in block:
                words = block.split()
                if len(words) >= min_words:
                    paragraphs.append(" ".join(words))
    unique = list(dict.fromkeys(paragraphs))
    if len(unique) < count:
        raise ValueError(f"the Language Reference has {len(unique)} paragraphs, fewer than {count}")
    return unique[:count]


def other_samples(modality: Modality, count: int) -> tuple[str, list[Sample]]:
    """Samples unlike any calibration set, to report quality on (text: the Python Language Reference)."""
    if modality != "text":
        return "", []
    return "the Python Language Reference", [Sample(text=t) for t in reference_paragraphs(count)[::-1]]


def default_samples(modality: Modality) -> list[Sample]:
    """The calibration set that ships with the project for a model of `modality`."""
    if modality == "text":
        return default_text_samples()
    from infoprune_core.demo import demo_calibration_path

    samples = read_samples(demo_calibration_path())
    return samples if modality == "vision_text" else [Sample(image=s.image) for s in samples]
