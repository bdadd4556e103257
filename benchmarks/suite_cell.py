"""One cell of the benchmark suite: one target, one method, one budget, one scope, in its own process.

    python -m benchmarks.suite_cell '<json spec>'   (the suite starts this; it prints one JSON line)

A process of its own gives every cell a clean peak-memory reading and keeps a crash in one method
from taking the others down. The cell compresses, records wall time and peak RSS, then loads the
original next to the compressed model and measures FLOPs and params (same counter and stated input
for every method), quality (the target's evaluator) and latency at batch 1 and 32 (the two models
timed alternately in the same process, median of repeats after warm-up).
"""

from __future__ import annotations

import json
import resource
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from benchmarks.suite_targets import TARGETS, Target, timing_samples
from infoprune_core import CompressionConfig, compress, load_compressed
from infoprune_core.calibration import Encoder
from infoprune_core.errors import BudgetError, InfoPruneError
from infoprune_core.evaluation import timed_forward
from infoprune_core.modeling import LoadedModel, load_model
from infoprune_core.plan.flops import count_flops, parameter_count_by_part
from infoprune_core.run import encode_all, first_sample_input, prepare_samples

SCOPES = {"vision": ("vision",), "language": ("language",), "both": ("vision", "language")}
# Name -> (heads, ffn) of InfoPrune's pipeline, or a peer tool. Head baselines share InfoPrune's FFN
# planner (so the rows compare head criteria); FFN baselines share its training-free head criterion.
PIPELINE_METHODS: dict[str, tuple[str, str]] = {
    "infoprune": ("infoprune", "auto"),
    "infoprune_free": ("infoprune_free", "auto"),
    "random": ("random", "auto"),
    "l1": ("l1", "auto"),
    "taylor": ("taylor", "auto"),
    "entropy": ("entropy", "auto"),
    "svd": ("infoprune_free", "svd"),
    "uniform": ("infoprune_free", "uniform"),
}
PEER_METHODS: dict[str, str] = {"tp_magnitude": "magnitude", "tp_taylor": "taylor"}
METHODS: tuple[str, ...] = (*PIPELINE_METHODS, *PEER_METHODS)


@dataclass(frozen=True)
class CellSpec:
    target: str
    method: str  # one of METHODS, or "original" (no compression: the reference row)
    budget: float
    scope: str
    threads: int = 1
    repeats: int = 5
    warmup: int = 2
    gate_steps: int = 150
    recovery_steps: int = 0
    calibration_samples: int = 128
    device: str = "cpu"
    dtype: str = "float32"


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def pipeline_config(spec: CellSpec, target: Target) -> CompressionConfig:
    heads, ffn = PIPELINE_METHODS.get(spec.method, ("none", "none"))
    calibration = target.calibration()
    return CompressionConfig(
        target_flops_ratio=spec.budget,
        scope=SCOPES[spec.scope],  # type: ignore[arg-type]
        heads=heads,  # type: ignore[arg-type]
        ffn=ffn,  # type: ignore[arg-type]
        calibration=None if calibration is None else str(calibration),
        calibration_samples=spec.calibration_samples,
        gate_steps=spec.gate_steps,
        recovery_steps=spec.recovery_steps,
        measure_latency=False,
        threads=spec.threads,
        device=spec.device,
    )


def compress_with_pipeline(spec: CellSpec, target: Target, scratch: Path) -> tuple[nn.Module, dict[str, Any]]:
    result = compress(str(target.model_dir()), scratch / "artifact", pipeline_config(spec, target))
    report = result.report
    details = {
        "planner": report["heads"].get("planner"),
        "stages_seconds": report["stages_seconds"],
        "ffn_method": report["ffn"].get("method"),
    }
    return load_compressed(result.output_dir, spec.device), details


def compress_with_peer(spec: CellSpec, target: Target, loaded: LoadedModel) -> tuple[nn.Module, dict[str, Any]]:
    from benchmarks.peers.torch_pruning_peer import prune_with_torch_pruning

    config = pipeline_config(spec, target)
    encoder = Encoder(loaded.processor, loaded.adapter.modality, config.max_text_tokens)
    calibration, _ = prepare_samples(config, loaded)
    batches = encode_all(encoder, calibration, config.batch_size, spec.device)
    outcome = prune_with_torch_pruning(
        loaded.model,
        loaded.adapter,
        SCOPES[spec.scope],
        batches,
        first_sample_input(encoder, calibration, spec.device),
        PEER_METHODS[spec.method],  # type: ignore[arg-type]
        spec.budget,
    )
    details = {"pruning_ratio": outcome.pruning_ratio, "peer_status": outcome.status, "reason": outcome.reason}
    if outcome.status != "ok" or outcome.model is None:
        kind = BudgetError if outcome.status == "unreachable" else RuntimeError
        raise kind(f"torch-pruning {outcome.status}: {outcome.reason}")
    return outcome.model, details


def paired_latency(models: Mapping[str, nn.Module], batch: Mapping[str, torch.Tensor], spec: CellSpec) -> dict:
    """Median forward time of each model, the models timed in turn within every repeat."""
    timings: dict[str, list[float]] = {name: [] for name in models}
    for index in range(spec.warmup + spec.repeats):
        for name, model in models.items():
            elapsed = timed_forward(model, batch)
            if index >= spec.warmup:
                timings[name].append(elapsed)
    return {name: statistics.median(values) for name, values in timings.items()}


def measure(spec: CellSpec, target: Target, compressed: nn.Module, original: LoadedModel) -> dict[str, Any]:
    config = pipeline_config(spec, target)
    encoder = Encoder(original.processor, original.adapter.modality, config.max_text_tokens)
    dtype = getattr(torch, spec.dtype)
    models = {"original": original.model.to(dtype).eval(), "compressed": compressed.to(dtype).eval()}
    samples = timing_samples(target)
    flop_input = first_sample_input(encoder, prepare_samples(config, original)[0], spec.device)
    scope = SCOPES[spec.scope]
    flops, params = {}, {}
    for name, model in models.items():
        by_part = count_flops(model, original.adapter.attention_sites(model), flop_input).by_part(
            original.adapter, model
        )
        flops[name] = {"scope": sum(by_part[p] for p in scope), "total": sum(by_part.values())}
        params[name] = sum(parameter_count_by_part(model, original.adapter).values())
    latency = {}
    for size in (1, 32):
        if size > len(samples):
            raise ValueError(f"{target.name} has fewer than {size} timing samples")
        batch = {k: v.to(spec.device) for k, v in encoder.encode(samples[:size]).items()}
        latency[f"batch{size}"] = paired_latency(models, batch, spec)
    evaluate = target.make_evaluator()
    return {
        "quality": evaluate(models["compressed"], models["original"], encoder),
        "flops_ratio": flops["compressed"]["scope"] / flops["original"]["scope"],
        "total_flops_ratio": flops["compressed"]["total"] / flops["original"]["total"],
        "params_ratio": params["compressed"] / params["original"],
        "params": params["compressed"],
        "latency_ms": {key: value["compressed"] for key, value in latency.items()},
        "original_latency_ms": {key: value["original"] for key, value in latency.items()},
        "speedup": {key: value["original"] / value["compressed"] for key, value in latency.items()},
    }


def run_cell(spec: CellSpec) -> dict[str, Any]:
    torch.set_num_threads(spec.threads)
    torch.manual_seed(0)
    target = TARGETS[spec.target]
    row: dict[str, Any] = {**asdict(spec), "status": "ok"}
    started = time.perf_counter()
    try:
        with tempfile.TemporaryDirectory() as scratch:
            details: dict[str, Any] = {}
            if spec.method == "original":
                compressed = load_model(target.model_dir(), spec.device).model
            elif spec.method in PEER_METHODS:
                compressed, details = compress_with_peer(spec, target, load_model(target.model_dir(), spec.device))
            else:
                compressed, details = compress_with_pipeline(spec, target, Path(scratch))
            row.update(details)
            row["compress_seconds"] = time.perf_counter() - started
            row["compress_peak_rss_mb"] = peak_rss_mb()
        row.update(measure(spec, target, compressed, load_model(target.model_dir(), spec.device)))
    except BudgetError as error:
        row.update(status="unreachable", error=str(error))
    except (InfoPruneError, RuntimeError, ValueError, NotImplementedError) as error:
        row.update(status="failed", error=f"{type(error).__name__}: {error}", trace=traceback.format_exc(limit=4))
    row["cell_seconds"] = time.perf_counter() - started
    row["peak_rss_mb"] = peak_rss_mb()
    return row


def main() -> None:
    spec = CellSpec(**json.loads(sys.argv[1]))
    print(json.dumps(run_cell(spec)), flush=True)


if __name__ == "__main__":
    main()
