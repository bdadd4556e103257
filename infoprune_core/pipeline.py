"""The compression pipeline: load, profile, prune heads, compress FFNs, recover, evaluate, save."""

from __future__ import annotations

import copy
import os
import platform
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import transformers

from infoprune_core import ffn as ffn_compression
from infoprune_core.adapters.base import AttentionSite, FFNSite
from infoprune_core.artifacts import MANIFEST, content_hash, save_compressed
from infoprune_core.calibration import Encoder, Sample, batched, default_samples, read_samples
from infoprune_core.config import CompressionConfig
from infoprune_core.errors import BudgetError, CalibrationError, SourceError
from infoprune_core.evaluation import accuracy, fidelity, latency, latency_batch
from infoprune_core.flops import FlopCount, count_flops, parameter_count_by_part
from infoprune_core.gates import GateSettings, train_gates
from infoprune_core.head_selection import head_flops, select_heads
from infoprune_core.modeling import LoadedModel, load_model
from infoprune_core.progress import ProgressCallback, ProgressEvent, Stage, no_progress
from infoprune_core.recovery import distill
from infoprune_core.scores import (
    Scores,
    ablation_scores,
    entropy_scores,
    information_scores,
    l1_scores,
    random_scores,
    rank_correlation,
    taylor_scores,
    teacher_outputs,
)
from infoprune_core.sources import resolve_source
from infoprune_core.statistics import CalibrationStats, StatisticsCollector
from infoprune_core.surgery import get_linear, prune_heads

BUDGET_TOLERANCE = 0.02
Batch = dict[str, torch.Tensor]


@dataclass
class CompressionResult:
    output_dir: Path
    report: dict[str, Any]


def default_cache_dir() -> Path:
    return Path(os.environ.get("INFOPRUNE_CACHE_DIR", Path.home() / ".cache" / "infoprune"))


class Run:
    """State shared by the stages of one run: progress, timings and the prepared data."""

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
        start = time.perf_counter()
        yield
        self.timings[stage] = self.timings.get(stage, 0.0) + time.perf_counter() - start
        self.emit(stage, 1.0, message)


def _to_device(batch: Mapping[str, torch.Tensor], device: str) -> Batch:
    return {key: value.to(device) for key, value in batch.items()}


def prepare_samples(config: CompressionConfig, loaded: LoadedModel) -> tuple[list[Sample], list[Sample]]:
    """Calibration and held-out samples (the held-out ones are the last of the set)."""
    samples = read_samples(Path(config.calibration)) if config.calibration else default_samples(loaded.adapter.modality)
    if len(samples) < 2:
        raise CalibrationError("the calibration set needs at least 2 samples (calibration + held-out)")
    held_out = min(config.held_out_samples, len(samples) // 4 or 1)
    return samples[: len(samples) - held_out][: config.calibration_samples], samples[len(samples) - held_out :]


def encode_all(encoder: Encoder, samples: Sequence[Sample], batch_size: int, device: str) -> list[Batch]:
    return [_to_device(encoder.encode(chunk), device) for chunk in batched(samples, batch_size)]


def collect_statistics(
    loaded: LoadedModel,
    attention: Sequence[AttentionSite],
    ffns: Sequence[FFNSite],
    batches: Sequence[Batch],
    run: Run,
    stage: Stage,
) -> CalibrationStats:
    collector = StatisticsCollector(loaded.model, attention, ffns)
    try:
        for index, batch in enumerate(batches):
            collector.observe(batch)
            run.emit(stage, (index + 1) / len(batches), f"calibration batch {index + 1}/{len(batches)}")
    finally:
        stats = collector.close()
    return stats


def head_scores(
    method: str,
    loaded: LoadedModel,
    sites: Sequence[AttentionSite],
    stats: CalibrationStats,
    batches: Sequence[Batch],
    seed: int,
) -> Scores:
    model = loaded.model
    if method == "random":
        return random_scores(sites, seed)
    if method == "l1":
        return l1_scores(model, sites)
    if method == "taylor":
        return taylor_scores(model, sites, batches)
    if method == "entropy":
        return entropy_scores(model, sites, batches)
    return information_scores(model, sites, stats.attention, scale_aware=True)


def _scope_total(by_part: Mapping[str, float], scope: Sequence[str]) -> float:
    return sum(by_part[part] for part in scope)


def _flop_input(encoder: Encoder, samples: Sequence[Sample], device: str) -> Batch:
    return _to_device(encoder.encode(samples[:1]), device)


def describe_input(batch: Mapping[str, torch.Tensor]) -> dict[str, list[int]]:
    return {key: list(value.shape) for key, value in batch.items()}


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    try:
        own = version("infoprune")
    except PackageNotFoundError:
        own = "unknown"
    return {
        "infoprune": own,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
    }


def compress(
    source: str,
    output_dir: Path | str,
    config: CompressionConfig,
    progress: ProgressCallback | None = None,
    cache_dir: Path | None = None,
) -> CompressionResult:
    """Compress the model at `source` into `output_dir` under `config`; returns the report."""
    torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    run = Run(config, progress or no_progress)
    device = config.device
    with run.stage("loading", f"loading {source}"):
        directory = resolve_source(source, cache_dir or default_cache_dir())
        if (directory / MANIFEST).exists():
            raise SourceError(f"{source} is already an InfoPrune artifact; compress the original model instead")
        loaded = load_model(directory, device)
        model, adapter = loaded.model, loaded.adapter
        encoder = Encoder(loaded.processor, adapter.modality, config.max_text_tokens)
        calibration, held_out = prepare_samples(config, loaded)
        calibration_batches = encode_all(encoder, calibration, config.batch_size, device)
        held_out_batches = encode_all(encoder, held_out, config.batch_size, device)
        evaluation = read_samples(Path(config.eval_set)) if config.eval_set else []
        flop_input = _flop_input(encoder, calibration, device)
        attention_sites = [s for s in adapter.attention_sites(model) if s.part in config.scope]
        ffn_sites = [s for s in adapter.ffn_sites(model) if s.part in config.scope]
        if not attention_sites and not ffn_sites:
            raise BudgetError(
                f"scope {', '.join(config.scope)} holds nothing to compress in a {loaded.config['model_type']} model"
            )
    original = copy.deepcopy(model) if config.recovery_steps > 0 else None
    report: dict[str, Any] = {
        "model": {"source": source, "model_type": loaded.config["model_type"], "architecture": type(model).__name__},
        "input": describe_input(flop_input),
        "scope": list(config.scope),
        "config": config.model_dump(mode="json"),
    }

    with run.stage("evaluating", "measuring the original model"):
        counts_before = count_flops(model, adapter.attention_sites(model), flop_input)
        flops_before = counts_before.by_part(adapter, model)
        params_before = parameter_count_by_part(model, adapter)
        teachers = teacher_outputs(model, held_out_batches)
        timing_batch = latency_batch(held_out_batches, config.latency_batch)
        latency_before = latency(model, timing_batch, config.latency_repeats) if config.measure_latency else None
        accuracy_before = accuracy(model, encoder, evaluation, config.batch_size) if evaluation else None
    scope_before = _scope_total(flops_before, config.scope)
    hidden = {s.name: get_linear(model, s.o).out_features for s in attention_sites}
    per_head = {s.name: head_flops(s, counts_before, hidden[s.name]) for s in attention_sites}
    attention_prunable = sum(per_head[s.name] * s.num_heads for s in attention_sites)
    ffn_dense = ffn_compression.dense_ffn_flops(ffn_sites, counts_before)

    with run.stage("profiling", "calibration statistics"):
        stats = collect_statistics(loaded, attention_sites, ffn_sites, calibration_batches, run, "profiling")
        profile = head_profile(loaded, attention_sites, stats)
        if config.validate_scores and attention_sites:
            report["score_validation"] = validate_scores(
                loaded, attention_sites, stats, calibration_batches, held_out_batches, teachers, run
            )

    heads_report: dict[str, Any] = {"method": config.heads, "layers": profile}
    with run.stage("pruning_heads", f"head method {config.heads}"):
        removal = head_removal_target(config, attention_prunable, ffn_dense, scope_before)
        if config.heads != "none" and attention_sites and removal > 0:
            scores = head_scores(config.heads, loaded, attention_sites, stats, calibration_batches, config.seed)
            if config.heads == "infoprune":
                scores = train_gates(
                    model,
                    attention_sites,
                    stats.attention,
                    scores,
                    per_head,
                    removal,
                    calibration_batches,
                    GateSettings(steps=config.gate_steps, seed=config.seed),
                    on_step=run.ticker("pruning_heads", "gate training step"),
                )
            kept = select_heads(attention_sites, scores, per_head, removal)
            for site in attention_sites:
                if len(kept[site.name]) < site.num_heads:
                    prune_heads(model, site, kept[site.name])
                heads_report["layers"][site.name]["kept"] = kept[site.name]
                heads_report["layers"][site.name]["final_score"] = scores[site.name].tolist()
    structure: dict[str, Any] = {
        "attention": {
            name: layer["kept"]
            for name, layer in heads_report["layers"].items()
            if "kept" in layer and len(layer["kept"]) < layer["num_heads"]
        },
        "ffn_width": {},
        "ffn_rank": {},
    }

    with run.stage("compressing_ffn", f"FFN method {config.ffn}"):
        ffn_report = compress_ffns(loaded, ffn_sites, config, calibration_batches, flop_input, scope_before, run)
        structure["ffn_width"] = ffn_report.pop("widths")
        structure["ffn_rank"] = ffn_report.pop("ranks")

    counts_after = count_flops(model, adapter.attention_sites(model), flop_input)
    flops_after = counts_after.by_part(adapter, model)
    achieved = _scope_total(flops_after, config.scope) / scope_before
    if config.target_flops_ratio is not None and achieved > config.target_flops_ratio + BUDGET_TOLERANCE:
        raise BudgetError(
            f"the budget {config.target_flops_ratio:.2f} cannot be met with heads={config.heads}, "
            f"ffn={config.ffn}: the closest reachable is {achieved:.3f} of the scope's FLOPs"
        )

    with run.stage("evaluating", "measuring the compressed model"):
        quality = {"after_compression": fidelity(model, held_out_batches, teachers)}
        accuracy_after = (
            {"after_compression": accuracy(model, encoder, evaluation, config.batch_size)} if evaluation else {}
        )
    if original is not None:
        with run.stage("recovering", "distillation from the original"):
            losses = distill(
                model,
                original,
                calibration_batches,
                config.recovery_steps,
                on_step=run.ticker("recovering", "distillation step"),
            )
            report["recovery"] = {"steps": config.recovery_steps, "first_loss": losses[0], "last_loss": losses[-1]}
        with run.stage("evaluating", "measuring the recovered model"):
            quality["after_recovery"] = fidelity(model, held_out_batches, teachers)
            if evaluation:
                accuracy_after["after_recovery"] = accuracy(model, encoder, evaluation, config.batch_size)
        del original
    with run.stage("evaluating", "latency of the compressed model"):
        latency_after = latency(model, timing_batch, config.latency_repeats) if config.measure_latency else None

    report.update(
        {
            "params": {
                "before": _with_total(params_before),
                "after": _with_total(parameter_count_by_part(model, adapter)),
            },
            "flops": {
                "before": _with_total(flops_before),
                "after": _with_total(flops_after),
                "scope_ratio": achieved,
                "target_scope_ratio": config.target_flops_ratio,
            },
            "latency": _latency_report(config, latency_before, latency_after, timing_batch),
            "fidelity": quality,
            "heads": heads_report,
            "ffn": ffn_report,
            "stages_seconds": dict(run.timings),
            "versions": versions(),
        }
    )
    if evaluation:
        report["accuracy"] = {
            "eval_set": config.eval_set,
            "samples": len(evaluation),
            "before": accuracy_before,
            **accuracy_after,
        }
    with run.stage("saving", f"writing {output_dir}"):
        manifest = {
            "source": {
                "id": source,
                "content_hash": content_hash(directory),
                "revision": loaded.config.get("_commit_hash"),
            },
            "scope": list(config.scope),
            "budget": _budget(config),
            "structure": structure,
            "report": report,
        }
        output = save_compressed(model, directory, Path(output_dir), manifest)
    return CompressionResult(output, report)


def _with_total(by_part: Mapping[str, float]) -> dict[str, float]:
    return {**by_part, "total": sum(by_part.values())}


def _budget(config: CompressionConfig) -> dict[str, float | None]:
    return {
        "target_flops_ratio": config.target_flops_ratio,
        "head_keep_ratio": config.head_keep_ratio,
        "ffn_epsilon": config.ffn_epsilon,
    }


def _latency_report(config: CompressionConfig, before: dict | None, after: dict | None, batch: Batch) -> dict[str, Any]:
    if before is None or after is None:
        return {"measured": False}
    return {
        "measured": True,
        "device": config.device,
        "threads": torch.get_num_threads(),
        "batch": describe_input(batch),
        "before": before,
        "after": after,
        "speedup": before["median_ms"] / after["median_ms"],
    }


def head_removal_target(
    config: CompressionConfig, attention_prunable: float, ffn_dense: float, scope_before: float
) -> float:
    """Attention FLOPs to remove: the same fraction as the FFNs must lose for the overall target."""
    if config.heads == "none":
        return 0.0
    if config.head_keep_ratio is not None:
        return (1 - config.head_keep_ratio) * attention_prunable
    if config.target_flops_ratio is None:
        return 0.0
    fixed = scope_before - attention_prunable - (ffn_dense if config.ffn != "none" else 0.0)
    compressible = attention_prunable + (ffn_dense if config.ffn != "none" else 0.0)
    keep = (config.target_flops_ratio * scope_before - fixed) / max(compressible, 1e-9)
    if keep <= 0:
        raise BudgetError(
            f"target {config.target_flops_ratio:.2f} is below what compression can reach: parts that are not "
            f"compressed already cost {fixed / scope_before:.3f} of the scope's FLOPs"
        )
    return (1 - min(keep, 1.0)) * attention_prunable


def head_profile(loaded: LoadedModel, sites: Sequence[AttentionSite], stats: CalibrationStats) -> dict[str, Any]:
    """Per layer: eRank, KS (paper and scale-aware), S_h, and the layout."""
    model = loaded.model
    paper = information_scores(model, sites, stats.attention, scale_aware=False)
    aware = information_scores(model, sites, stats.attention, scale_aware=True)
    profile = {}
    for site in sites:
        erank = stats.attention[site.name].erank.float()
        profile[site.name] = {
            "part": site.part,
            "num_heads": site.num_heads,
            "num_kv_heads": site.num_kv_heads,
            "head_dim": site.head_dim,
            "erank": erank.tolist(),
            "score_paper": paper[site.name].tolist(),
            "score_scale_aware": aware[site.name].tolist(),
        }
    return profile


def validate_scores(
    loaded: LoadedModel,
    sites: Sequence[AttentionSite],
    stats: CalibrationStats,
    batches: Sequence[Batch],
    held_out: Sequence[Batch],
    teachers: Sequence[tuple[torch.Tensor, bool]],
    run: Run,
) -> dict[str, Any]:
    """Spearman correlation of each score with single-head ablation damage on held-out data."""
    reference = ablation_scores(loaded.model, sites, held_out, teachers, run.ticker("profiling", "ablating head"))
    candidates = {
        "infoprune_paper": information_scores(loaded.model, sites, stats.attention, scale_aware=False),
        "infoprune_scale_aware": information_scores(loaded.model, sites, stats.attention, scale_aware=True),
        "l1": l1_scores(loaded.model, sites),
        "taylor": taylor_scores(loaded.model, sites, batches),
        "random": random_scores(sites, 0),
    }
    return {
        "reference": "single-head ablation",
        "spearman": {name: rank_correlation(score, reference) for name, score in candidates.items()},
        "ablation": {name: values.tolist() for name, values in reference.items()},
    }


def compress_ffns(
    loaded: LoadedModel,
    sites: Sequence[FFNSite],
    config: CompressionConfig,
    batches: Sequence[Batch],
    flop_input: Batch,
    scope_before: float,
    run: Run,
) -> dict[str, Any]:
    """Plan and apply FFN compression on the (head-pruned) model, calibrated on it."""
    model, adapter = loaded.model, loaded.adapter
    empty: dict[str, Any] = {"method": config.ffn, "widths": {}, "ranks": {}}
    if config.ffn == "none" or not sites:
        return empty
    if config.target_flops_ratio is None and config.ffn_epsilon is None:
        return empty
    counts = count_flops(model, adapter.attention_sites(model), flop_input)
    stats = collect_statistics(loaded, [], sites, batches, run, "compressing_ffn")
    dense = ffn_compression.dense_ffn_flops(sites, counts)
    if config.ffn == "width":
        widths = ffn_compression.width_scores(model, sites, stats, counts)
        factors: list[ffn_compression.LinearFactors] = []

        def plan_at(epsilon: float) -> ffn_compression.FFNPlan:
            return ffn_compression.width_plan(widths, epsilon)
    else:
        widths = []
        factors = ffn_compression.factorise_all(model, sites, stats, counts, whitened=config.ffn == "whitened_svd")

        def plan_at(epsilon: float) -> ffn_compression.FFNPlan:
            return ffn_compression.low_rank_plan(factors, epsilon, uniform=config.ffn == "uniform")

    if config.ffn_epsilon is not None:
        plan = plan_at(config.ffn_epsilon)
    else:
        assert config.target_flops_ratio is not None
        scope_now = _scope_total(counts.by_part(adapter, model), config.scope)
        target = config.target_flops_ratio * scope_before - (scope_now - dense)
        plan = ffn_compression.bisect_epsilon(plan_at, target, dense)
    ffn_compression.apply_plan(model, plan, factors, widths)
    return {
        "method": config.ffn,
        "epsilon": plan.epsilon,
        "dense_flops": dense,
        "planned_flops": plan.flops,
        "widths": {name: width for name, width in plan.widths.items() if width is not None},
        "ranks": {path: rank for path, rank in plan.ranks.items() if rank is not None},
    }


def profile(
    source: str, config: CompressionConfig, progress: ProgressCallback | None = None, cache_dir: Path | None = None
) -> dict[str, Any]:
    """Scores and FLOPs without changing anything."""
    torch.set_num_threads(config.threads)
    run = Run(config, progress or no_progress)
    with run.stage("loading", f"loading {source}"):
        loaded = load_model(resolve_source(source, cache_dir or default_cache_dir()), config.device)
        encoder = Encoder(loaded.processor, loaded.adapter.modality, config.max_text_tokens)
        calibration, held_out = prepare_samples(config, loaded)
        batches = encode_all(encoder, calibration, config.batch_size, config.device)
        flop_input = _flop_input(encoder, calibration, config.device)
    model, adapter = loaded.model, loaded.adapter
    sites = [s for s in adapter.attention_sites(model) if s.part in config.scope]
    ffn_sites = [s for s in adapter.ffn_sites(model) if s.part in config.scope]
    with run.stage("profiling", "calibration statistics"):
        counts: FlopCount = count_flops(model, adapter.attention_sites(model), flop_input)
        stats = collect_statistics(loaded, sites, ffn_sites, batches, run, "profiling")
        result: dict[str, Any] = {
            "model": {"source": source, "model_type": loaded.config["model_type"]},
            "input": describe_input(flop_input),
            "flops": _with_total(counts.by_part(adapter, model)),
            "params": _with_total(parameter_count_by_part(model, adapter)),
            "layers": head_profile(loaded, sites, stats),
            "ffn_spectra": ffn_spectra(model, ffn_sites, stats),
        }
        for site in sites:
            result["layers"][site.name]["attention_flops"] = counts.attention_core.get(site.name, 0.0) + sum(
                counts.modules.get(path, 0.0) for path in (site.q, site.k, site.v, site.o)
            )
        if config.validate_scores and sites:
            held = encode_all(encoder, held_out, config.batch_size, config.device)
            result["score_validation"] = validate_scores(
                loaded, sites, stats, batches, held, teacher_outputs(model, held), run
            )
    return result


def ffn_spectra(model: torch.nn.Module, sites: Sequence[FFNSite], stats: CalibrationStats) -> dict[str, Any]:
    """Per FFN linear: whitened singular values summarised (eRank and ranks at 1%, 5%, 10% KS loss)."""
    from infoprune_core.spectra import effective_rank, truncation_ks

    counts = FlopCount()
    spectra = {}
    for factors in ffn_compression.factorise_all(model, sites, stats, counts, whitened=True):
        losses = truncation_ks(factors.s)
        spectra[factors.path] = {
            "shape": list(factors.shape),
            "erank": float(effective_rank(factors.s)),
            "rank_at_ks": {str(eps): int((losses > eps).sum()) + 1 for eps in (0.01, 0.05, 0.1)},
            "break_even_rank": factors.break_even,
        }
    return spectra
