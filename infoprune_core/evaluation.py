"""What was gained and lost: fidelity to the original, task accuracy, measured latency."""

from __future__ import annotations

import statistics
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from infoprune_core.adapters.base import ModelAdapter
from infoprune_core.calibration import Encoder, Sample, batched
from infoprune_core.config import CompressionConfig
from infoprune_core.objectives import cosine, divergence, model_output, teacher_outputs, top1_agreement
from infoprune_core.plan.flops import FlopCount, count_flops, parameter_count_by_part

if TYPE_CHECKING:
    from infoprune_core.run import CalibrationData

Batch = Mapping[str, torch.Tensor]
Teachers = list[tuple[torch.Tensor, bool]]


def with_total(by_part: Mapping[str, float]) -> dict[str, float]:
    """Per-part numbers with their total."""
    return {**by_part, "total": sum(by_part.values())}


@dataclass
class Measurement:
    """A model measured on a run's data: FLOPs and params per part, fidelity, accuracy, latency."""

    counts: FlopCount
    flops: dict[str, float]
    params: dict[str, int]
    teachers: Teachers  # the original model's held-out outputs (fidelity is measured against them)
    other_teachers: Teachers  # and on the data unlike the calibration set
    fidelity: dict[str, Any] | None
    fidelity_other: dict[str, Any] | None
    accuracy: float | None
    latency: dict[str, float] | None


def measure(
    model: nn.Module,
    adapter: ModelAdapter,
    data: CalibrationData,
    config: CompressionConfig,
    reference: Measurement | None,
    timing: bool = True,
) -> Measurement:
    """Measure `model`; without a `reference` it is the original, whose outputs become the teachers."""
    counts = count_flops(model, adapter.attention_sites(model), data.flop_input)
    teachers = reference.teachers if reference else teacher_outputs(model, data.held_out)
    other = reference.other_teachers if reference else teacher_outputs(model, data.other)
    return Measurement(
        counts=counts,
        flops=counts.by_part(adapter, model),
        params=parameter_count_by_part(model, adapter),
        teachers=teachers,
        other_teachers=other,
        fidelity=None if reference is None else fidelity(model, data.held_out, teachers),
        fidelity_other=None if reference is None or not other else fidelity(model, data.other, other),
        accuracy=accuracy(model, data.encoder, data.evaluation, config.batch_size) if data.evaluation else None,
        latency=data.latency(model, config) if timing and config.measure_latency else None,
    )


FIDELITY_ROWS = 2  # rows compared at a time: a large vocabulary's logits are big


def fidelity(
    model: nn.Module, batches: Sequence[Batch], teachers: Sequence[tuple[torch.Tensor, bool]]
) -> dict[str, float]:
    """Output KL (logits) or relative error (features), cosine and top-1 agreement vs the original.

    Each metric is the mean over batches of its token-weighted mean within the batch, computed a few
    rows at a time so that the working copies of a large vocabulary's logits stay small.
    """
    metrics = {"divergence": divergence, "cosine": cosine, "top1_agreement": top1_agreement}
    totals = dict.fromkeys(metrics, 0.0)
    logits = teachers[0][1]
    with torch.no_grad():
        for batch, (teacher, _) in zip(batches, teachers, strict=True):
            student, _ = model_output(model, batch)
            mask = batch.get("attention_mask")
            sums, weight = dict.fromkeys(metrics, 0.0), 0.0
            for start in range(0, student.shape[0], FIDELITY_ROWS):
                rows = slice(start, start + FIDELITY_ROWS)
                s, t = student[rows], teacher[rows].float()
                m = None if mask is None or mask.shape != student.shape[:2] else mask[rows]
                tokens = float(m.sum()) if m is not None else float(s[..., 0].numel())
                sums["divergence"] += tokens * float(divergence(s, t, logits, m))
                sums["cosine"] += tokens * float(cosine(s, t, m))
                sums["top1_agreement"] += tokens * float(top1_agreement(s, t, m))
                weight += tokens
            del student
            for key in totals:
                totals[key] += sums[key] / max(weight, 1.0)
    result: dict[str, Any] = {key: value / len(batches) for key, value in totals.items()}
    result["kind"] = "kl" if logits else "relative_mse"
    if not logits:
        del result["top1_agreement"]
    return result


def accuracy(model: nn.Module, encoder: Encoder, samples: Sequence[Sample], batch_size: int) -> float:
    """Exact-match accuracy: class index for `label` samples, teacher-forced greedy answer tokens otherwise."""
    correct = 0
    with torch.no_grad():
        for chunk in batched(samples, batch_size):
            if all(s.label is not None for s in chunk):
                inputs = _on_device(encoder.encode(chunk), model)
                output, _ = model_output(model, inputs)
                scores = output if output.dim() == 2 else output[:, -1]
                labels = torch.tensor([s.label for s in chunk], device=scores.device)
                correct += int((scores.argmax(-1) == labels).sum())
                continue
            inputs = _on_device(encoder.encode(chunk, with_answers=True), model)
            output, _ = model_output(model, inputs)
            ids = inputs["input_ids"]
            for row, length in enumerate(encoder.answer_lengths(chunk)):
                predicted = output[row, -length - 1 : -1].argmax(-1)
                correct += int(torch.equal(predicted, ids[row, -length:]))
    return correct / len(samples)


def timed_forward(model: nn.Module, batch: Batch) -> float:
    """Wall time of one forward pass in milliseconds (waiting for the device to finish)."""
    synchronize = torch.cuda.synchronize if _device_of(model).type == "cuda" else None
    if synchronize:
        synchronize()
    start = time.perf_counter()
    with torch.no_grad():
        model(**batch)
    if synchronize:
        synchronize()
    return (time.perf_counter() - start) * 1000


def latency(model: nn.Module, batch: Batch, repeats: int, warmup: int = 2) -> dict[str, float]:
    """Median wall time of a forward pass after warm-up, in milliseconds."""
    timings = [timed_forward(model, batch) for _ in range(warmup + repeats)][warmup:]
    return {"median_ms": statistics.median(timings), "min_ms": min(timings), "repeats": repeats}


def _device_of(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def _on_device(batch: Mapping[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    device = _device_of(model)
    return {key: value.to(device) for key, value in batch.items()}
