"""The compression pipeline: load, profile, prune heads, compress FFNs, recover, evaluate, save."""

from __future__ import annotations

import copy
import platform
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import transformers

from infoprune_core import ffn as ffn_compression
from infoprune_core.artifacts import MANIFEST, content_hash, save_compressed
from infoprune_core.calibration import Encoder, read_samples
from infoprune_core.config import CompressionConfig
from infoprune_core.errors import BudgetError, SourceError
from infoprune_core.evaluation import accuracy, fidelity, latency, latency_batch
from infoprune_core.ffn_stage import compress_ffns, ffn_spectra
from infoprune_core.flops import FlopCount, count_flops, parameter_count_by_part
from infoprune_core.gates import GateSettings, train_gates
from infoprune_core.head_selection import head_flops, select_heads
from infoprune_core.head_stage import (
    AUTO_FFN_METHODS,
    DEFAULT_FFN,
    choose_plan,
    head_profile,
    head_removal_target,
    head_scores,
    validate_scores,
)
from infoprune_core.modeling import load_model
from infoprune_core.progress import ProgressCallback, no_progress
from infoprune_core.recovery import distill
from infoprune_core.run import (
    Batch,
    Run,
    collect_statistics,
    default_cache_dir,
    describe_input,
    encode_all,
    first_sample_input,
    prepare_samples,
    scope_total,
)
from infoprune_core.scores import teacher_outputs
from infoprune_core.sources import resolve_source
from infoprune_core.surgery import get_linear, prune_heads

BUDGET_TOLERANCE = 0.02


@dataclass
class CompressionResult:
    output_dir: Path
    report: dict[str, Any]


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
        flop_input = first_sample_input(encoder, calibration, device)
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
    scope_before = scope_total(flops_before, config.scope)
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
        prune = config.heads != "none" and bool(attention_sites) and removal > 0
        scores = (
            head_scores(config.heads, loaded, attention_sites, stats, calibration_batches, config.seed) if prune else {}
        )
        ffn_method = DEFAULT_FFN if config.ffn == "auto" else config.ffn
        if config.plan_search and config.target_flops_ratio is not None and config.ffn != "none" and ffn_sites:
            removal, ffn_method, heads_report["planner"] = choose_plan(
                loaded,
                attention_sites if prune else [],
                ffn_sites,
                scores,
                per_head,
                removal if prune else 0.0,
                AUTO_FFN_METHODS if config.ffn == "auto" else (config.ffn,),
                config,
                calibration_batches,
                flop_input,
                scope_before,
                run,
            )
        if prune:
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

    with run.stage("compressing_ffn", f"FFN method {ffn_method}"):
        ffn_report = compress_ffns(
            loaded, ffn_sites, config, ffn_method, calibration_batches, flop_input, scope_before, run
        )
        structure["ffn_width"] = ffn_report.pop("widths")
        structure["ffn_rank"] = ffn_report.pop("ranks")

    counts_after = count_flops(model, adapter.attention_sites(model), flop_input)
    flops_after = counts_after.by_part(adapter, model)
    achieved = scope_total(flops_after, config.scope) / scope_before
    if config.target_flops_ratio is not None and achieved > config.target_flops_ratio + BUDGET_TOLERANCE:
        raise BudgetError(
            f"the budget {config.target_flops_ratio:.2f} cannot be met with heads={config.heads}, "
            f"ffn={ffn_method}: the closest reachable is {achieved:.3f} of the scope's FLOPs"
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
                learning_rate=config.recovery_learning_rate,
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
        flop_input = first_sample_input(encoder, calibration, config.device)
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
            "flops_per_module": {**counts.modules, **{f"{k} (QK^T, AV)": v for k, v in counts.attention_core.items()}},
            "params_per_module": {name: p.numel() for name, p in model.named_parameters()},
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
