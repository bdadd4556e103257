"""State and data shared by the stages of one run: progress, timings, and the prepared calibration data."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from infoprune_core.adapters.base import AttentionSite, FFNSite, ModelAdapter, Stack
from infoprune_core.calibration import Encoder, Sample, batched, default_samples, read_samples
from infoprune_core.calibration.samples import other_samples
from infoprune_core.calibration.statistics import CalibrationStats, StatisticsCollector
from infoprune_core.config import CompressionConfig
from infoprune_core.errors import CalibrationError
from infoprune_core.evaluation import latency
from infoprune_core.modeling import LoadedModel
from infoprune_core.progress import ProgressCallback, ProgressEvent, Stage

Batch = dict[str, torch.Tensor]


def default_cache_dir() -> Path:
    return Path(os.environ.get("INFOPRUNE_CACHE_DIR", Path.home() / ".cache" / "infoprune"))


class Run:
    """State shared by the stages of one run: progress and timings."""

    def __init__(self, config: CompressionConfig, progress: ProgressCallback) -> None:
        self.config = config
        self.progress = progress
        self.timings: dict[str, float] = {}

    def emit(self, stage: Stage, fraction: float, message: str = "") -> None:
        self.progress(ProgressEvent(stage, fraction, message))

    def ticker(self, stage: Stage, what: str):
        def tick(done: int, total: int) -> None:
            self.emit(stage, done / max(total, 1), f"{what} {done}/{total}")

        return tick

    @contextmanager
    def stage(self, stage: Stage, message: str = "") -> Iterator[None]:
        self.emit(stage, 0.0, message)
        with self.timed(stage):
            yield
        self.emit(stage, 1.0, message)

    @contextmanager
    def timed(self, name: str) -> Iterator[None]:
        """Add the block's wall time to `timings[name]` (a stage, or work that spans stages)."""
        start = time.perf_counter()
        yield
        self.timings[name] = self.timings.get(name, 0.0) + time.perf_counter() - start


def to_device(batch: Mapping[str, torch.Tensor], device: str) -> Batch:
    return {key: value.to(device) for key, value in batch.items()}


def prepare_samples(config: CompressionConfig, loaded: LoadedModel) -> tuple[list[Sample], list[Sample]]:
    """Calibration and held-out samples (the held-out ones are the last of the set).

    A text model's own calibration set is mixed with the shipped broad set (`shipped_share` of the
    calibration samples); the held-out samples are always the user's.
    """
    modality = loaded.adapter.modality
    samples = read_samples(Path(config.calibration)) if config.calibration else default_samples(modality)
    if len(samples) < 2:
        raise CalibrationError("the calibration set needs at least 2 samples (calibration + held-out)")
    held_out = min(config.held_out_samples, len(samples) // 4 or 1)
    calibration = samples[: len(samples) - held_out]
    shipped = (
        round(config.calibration_samples * config.shipped_share) if config.calibration and modality == "text" else 0
    )
    mixed = calibration[: config.calibration_samples - shipped] + default_samples(modality)[:shipped]
    return mixed, samples[len(samples) - held_out :]


def encode_all(encoder: Encoder, samples: Sequence[Sample], batch_size: int, device: str) -> list[Batch]:
    return [to_device(encoder.encode(chunk), device) for chunk in batched(samples, batch_size)]


def first_sample_input(encoder: Encoder, samples: Sequence[Sample], device: str) -> Batch:
    return to_device(encoder.encode(samples[:1]), device)


def describe_input(batch: Mapping[str, torch.Tensor]) -> dict[str, list[int]]:
    return {key: list(value.shape) for key, value in batch.items()}


@dataclass
class CalibrationData:
    """Everything a run feeds the model: calibration and held-out batches, the evaluation set, the
    stated input FLOPs are counted on, and the batch latency is timed on."""

    encoder: Encoder
    calibration: list[Batch]
    held_out: list[Batch]
    evaluation: list[Sample]
    flop_input: Batch
    timing_batch: Batch
    other: list[Batch]  # unlike any calibration set, to report quality on (empty when none ships)
    other_source: str

    def describe_flop_input(self) -> dict[str, list[int]]:
        return describe_input(self.flop_input)

    def describe_timing_batch(self) -> dict[str, list[int]]:
        return describe_input(self.timing_batch)

    def latency(self, model: nn.Module, config: CompressionConfig) -> dict[str, float]:
        return latency(model, self.timing_batch, config.latency_repeats)


def make_encoder(loaded: LoadedModel, max_text_tokens: int) -> Encoder:
    """The encoder of a loaded model, with its family's image placeholder."""
    adapter = loaded.adapter
    placeholder = adapter.image_placeholder(loaded.processor)
    return Encoder(loaded.processor, adapter.modality, max_text_tokens, placeholder, adapter.images_per_prompt)


def prepare_data(config: CompressionConfig, loaded: LoadedModel) -> CalibrationData:
    encoder = make_encoder(loaded, config.max_text_tokens)
    calibration, held_out = prepare_samples(config, loaded)
    device = "cpu" if config.offload else config.device  # where the model's weights live
    held_out_batches = encode_all(encoder, held_out, config.batch_size, device)
    timing = [held_out[i % len(held_out)] for i in range(config.latency_batch)]
    source, other = other_samples(loaded.adapter.modality, config.held_out_samples)
    return CalibrationData(
        encoder=encoder,
        calibration=encode_all(encoder, calibration, config.batch_size, device),
        held_out=held_out_batches,
        evaluation=read_samples(Path(config.eval_set)) if config.eval_set else [],
        flop_input=first_sample_input(encoder, calibration, device),
        timing_batch=to_device(encoder.encode(timing), device),
        other=encode_all(encoder, other, config.batch_size, device),
        other_source=source,
    )


def scope_stacks(adapter: ModelAdapter, model: nn.Module, scope: Sequence[str]) -> list[Stack]:
    """The model's layer stacks whose part is in scope, in forward order."""
    return [stack for stack in adapter.stacks(model) if stack.part in scope]


def collect_statistics(
    model: nn.Module,
    attention: Sequence[AttentionSite],
    ffns: Sequence[FFNSite],
    batches: Sequence[Batch],
    run: Run,
    stage: Stage,
) -> CalibrationStats:
    """Whole-model statistics in one pass (for profiling and criteria that score every head at once)."""
    collector = StatisticsCollector(model, attention, ffns)
    try:
        for index, batch in enumerate(batches):
            collector.observe(batch)
            run.emit(stage, (index + 1) / len(batches), f"calibration batch {index + 1}/{len(batches)}")
    finally:
        stats = collector.close()
    return stats


def scope_total(by_part: Mapping[str, float], scope: Sequence[str]) -> float:
    return sum(by_part[part] for part in scope)
