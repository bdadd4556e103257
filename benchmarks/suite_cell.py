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
import random
import resource
import shutil
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
from infoprune_core.calibration import default_samples, read_samples
from infoprune_core.errors import BudgetError, InfoPruneError
from infoprune_core.evaluation import fidelity, timed_forward
from infoprune_core.modeling import LoadedModel, adapter_for_config, load_model, read_config
from infoprune_core.objectives import teacher_outputs
from infoprune_core.pipeline import recovery_settings
from infoprune_core.plan.flops import count_flops, parameter_count_by_part
from infoprune_core.recovery import recover_if_closer
from infoprune_core.run import first_sample_input, make_encoder, prepare_data, prepare_samples, scope_stacks

SCOPES = {"vision": ("vision",), "language": ("language",), "both": ("vision", "language")}
# InfoPrune's pipeline: method name -> CompressionConfig fields that differ from the defaults. Head
# criteria other than the default share the default's allocation, FFN operator and re-fits, so their
# rows compare criteria; gates_norefit is the previous default's criterion without any re-fit.
PIPELINE_METHODS: dict[str, dict[str, Any]] = {
    "default": {},
    "gates_norefit": {"heads": "infoprune", "reconstruct": False},
    "gates": {"heads": "infoprune"},
    "erank_ks": {"heads": "infoprune_free"},
    "random": {"heads": "random"},
    "l1": {"heads": "l1"},
    "taylor": {"heads": "taylor"},
    "entropy": {"heads": "entropy"},
    "lowrank": {"ffn": "whitened_svd"},
}
PEER_METHODS: dict[str, str] = {"flap": "flap", "tp_magnitude": "magnitude", "tp_taylor": "taylor"}
METHODS: tuple[str, ...] = (*PIPELINE_METHODS, *PEER_METHODS)
OURS = "default"


@dataclass(frozen=True)
class CellSpec:
    target: str
    method: str  # one of METHODS, or "original" (no compression: the reference row)
    budget: float
    scope: str
    threads: int = 1
    repeats: int = 5
    warmup: int = 2
    recovery: bool = False  # then the default recovery (CompressionConfig's) runs after any method
    calibration_samples: int = 128
    seed: int = 0  # 0: the first calibration samples; k > 0: a random subset drawn with seed k
    device: str = "cpu"
    dtype: str = "float32"


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def calibration_subset(target: Target, spec: CellSpec, folder: Path) -> Path | None:
    """The calibration file of the cell: the target's own (seed 0), or a seeded random subset of it
    (written with copies of its images, since a JSONL may only name images in its own folder)."""
    source = target.calibration()
    if spec.seed == 0:
        return source
    modality = adapter_for_config(read_config(target.model_dir())).modality
    samples = read_samples(source) if source is not None else default_samples(modality)
    chosen = random.Random(spec.seed).sample(samples, min(len(samples), spec.calibration_samples + 16))
    lines = []
    for index, sample in enumerate(chosen):
        record: dict[str, Any] = {"text": sample.text}
        if sample.image is not None:
            name = f"{index:05d}{sample.image.suffix}"
            shutil.copyfile(sample.image, folder / name)
            record["image"] = name
        lines.append(json.dumps(record) + "\n")
    path = folder / f"calibration-seed{spec.seed}.jsonl"
    path.write_text("".join(lines))
    return path


def pipeline_config(spec: CellSpec, calibration: Path | None) -> CompressionConfig:
    overrides = PIPELINE_METHODS.get(spec.method, {})
    defaults = CompressionConfig(target_flops_ratio=spec.budget)
    return CompressionConfig(
        **{
            "target_flops_ratio": spec.budget,
            "scope": SCOPES[spec.scope],
            "calibration": None if calibration is None else str(calibration),
            "calibration_samples": spec.calibration_samples,
            "recovery_steps": defaults.recovery_steps if spec.recovery else 0,
            "measure_latency": False,
            "threads": spec.threads,
            "device": spec.device,
            "seed": spec.seed,
            **overrides,
        }
    )


def compress_with_pipeline(
    spec: CellSpec, config: CompressionConfig, target: Target, scratch: Path
) -> tuple[nn.Module, dict[str, Any]]:
    result = compress(str(target.model_dir()), scratch / "artifact", config)
    report = result.report
    details = {
        "plan": report.get("plan"),
        "stages_seconds": report["stages_seconds"],
        "ffn_method": report["ffn"].get("method"),
        "recovery": report.get("recovery"),
    }
    return load_compressed(result.output_dir, spec.device), details


def compress_with_peer(
    spec: CellSpec, config: CompressionConfig, target: Target, loaded: LoadedModel
) -> tuple[nn.Module, dict[str, Any]]:
    data = prepare_data(config, loaded)
    scope = SCOPES[spec.scope]
    if spec.method == "flap":
        from benchmarks.peers.flap import prune_with_flap

        details = prune_with_flap(loaded.model, loaded.adapter, scope, data.calibration, data.flop_input, spec.budget)
        model = loaded.model
    else:
        from benchmarks.peers.torch_pruning_peer import prune_with_torch_pruning

        outcome = prune_with_torch_pruning(
            loaded.model,
            loaded.adapter,
            scope,
            data.calibration,
            data.flop_input,
            PEER_METHODS[spec.method],  # type: ignore[arg-type]
            spec.budget,
        )
        details = {"pruning_ratio": outcome.pruning_ratio, "peer_status": outcome.status, "reason": outcome.reason}
        if outcome.status != "ok" or outcome.model is None:
            kind = BudgetError if outcome.status == "unreachable" else RuntimeError
            raise kind(f"torch-pruning {outcome.status}: {outcome.reason}")
        model = outcome.model
    if config.recovery_steps > 0:
        teacher = load_model(target.model_dir(), spec.device)
        blocks = [block.name for stack in scope_stacks(teacher.adapter, teacher.model, scope) for block in stack.blocks]
        targets = teacher_outputs(teacher.model, data.held_out)
        recovered = recover_if_closer(
            model,
            teacher.model,
            data.calibration,
            recovery_settings(config),
            blocks,
            distance=lambda m: float(fidelity(m, data.held_out, targets)["divergence"]),
            projector=teacher.adapter.projector(teacher.model),
        )
        details["recovery"] = {
            "steps": config.recovery_steps,
            "kept": recovered.kept,
            "last_loss": recovered.losses[-1],
        }
    return model, details


def paired_latency(models: Mapping[str, nn.Module], batch: Mapping[str, torch.Tensor], spec: CellSpec) -> dict:
    """Median forward time of each model, the models timed in turn within every repeat."""
    timings: dict[str, list[float]] = {name: [] for name in models}
    for index in range(spec.warmup + spec.repeats):
        for name, model in models.items():
            elapsed = timed_forward(model, batch)
            if index >= spec.warmup:
                timings[name].append(elapsed)
    return {name: statistics.median(values) for name, values in timings.items()}


def measure(
    spec: CellSpec, config: CompressionConfig, target: Target, compressed: nn.Module, original: LoadedModel
) -> dict[str, Any]:
    encoder = make_encoder(original, config.max_text_tokens)
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
            config = pipeline_config(spec, calibration_subset(target, spec, Path(scratch)))
            if spec.method == "original":
                compressed = load_model(target.model_dir(), spec.device).model
            elif spec.method in PEER_METHODS:
                loaded = load_model(target.model_dir(), spec.device)
                compressed, details = compress_with_peer(spec, config, target, loaded)
            else:
                compressed, details = compress_with_pipeline(spec, config, target, Path(scratch))
            row.update(details)
            row["compress_seconds"] = time.perf_counter() - started
            row["compress_peak_rss_mb"] = peak_rss_mb()
            row.update(measure(spec, config, target, compressed, load_model(target.model_dir(), spec.device)))
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
