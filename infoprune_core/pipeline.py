"""The compression pipeline: load, measure, plan, walk, recover, measure again, save.

Each stage gets what the one before it produced: the calibration data, the block removal paths, the
typed plan, the walk's report. The model is never copied; recovery reads the original again from disk.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import transformers

from infoprune_core import engine
from infoprune_core.artifacts import MANIFEST, content_hash, save_compressed
from infoprune_core.config import CompressionConfig
from infoprune_core.errors import BudgetError, SourceError
from infoprune_core.evaluation import fidelity, measure, with_total
from infoprune_core.heads import head_method
from infoprune_core.heads.base import ScoringContext
from infoprune_core.heads.validation import validate_scores
from infoprune_core.modeling import load_model
from infoprune_core.plan.budget import Budget, plan_for_budget, plan_uniform
from infoprune_core.plan.types import CompressionPlan
from infoprune_core.progress import ProgressCallback, no_progress
from infoprune_core.recovery import RecoverySettings, recover_if_closer
from infoprune_core.run import CalibrationData, Run, default_cache_dir, prepare_data, scope_stacks, scope_total
from infoprune_core.sources import resolve_source

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


def engine_settings(config: CompressionConfig) -> engine.EngineSettings:
    return engine.EngineSettings(
        ridge=config.ridge,
        reconstruct=config.reconstruct,
        relative_tokens=config.relative_tokens,
        storage_dtype=getattr(torch, config.activation_dtype),
        attention=config.heads != "none",
        ffn_operator=ffn_operator(config),
        original_targets=config.targets == "original",
        uniform=config.shape == "uniform",
        compute_device=config.device if config.offload else None,
    )


def home_device(config: CompressionConfig) -> str:
    """Where the weights live: the device, or the CPU when blocks visit the device one at a time."""
    return "cpu" if config.offload else config.device


def ffn_operator(config: CompressionConfig) -> str | None:
    """The FFN operator a config asks for; auto is width pruning (the measured default)."""
    return {"none": None, "auto": "width"}.get(config.ffn, config.ffn)


def recovery_settings(config: CompressionConfig) -> RecoverySettings:
    return RecoverySettings(
        steps=config.recovery_steps,
        learning_rate=config.recovery_learning_rate,
        hidden_weight=config.recovery_hidden_weight,
        parameters=config.recovery_parameters,
    )


def _budget(config: CompressionConfig, scope_flops: float, scope_linear_flops: float) -> Budget:
    return Budget(
        scope_flops, config.target_flops_ratio, config.head_keep_ratio, config.ffn_epsilon, scope_linear_flops
    )


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
    with run.stage("loading", f"loading {source}"):
        directory = resolve_source(source, cache_dir or default_cache_dir())
        if (directory / MANIFEST).exists():
            raise SourceError(f"{source} is already an InfoPrune artifact; compress the original model instead")
        loaded = load_model(directory, home_device(config))
        model, adapter = loaded.model, loaded.adapter
        data = prepare_data(config, loaded)
        stacks = scope_stacks(adapter, model, config.scope)
        if not stacks:
            raise BudgetError(
                f"scope {', '.join(config.scope)} holds nothing to compress in a {loaded.config['model_type']} model"
            )
    with run.stage("evaluating", "measuring the original model"):
        before = measure(model, adapter, data, config, reference=None)
    scope_before = scope_total(before.flops, config.scope)
    linear_before = scope_total(before.counts.by_part(adapter, model, core=False), config.scope)
    report: dict[str, Any] = {
        "model": {"source": source, "model_type": loaded.config["model_type"], "architecture": type(model).__name__},
        "input": data.describe_flop_input(),
        "scope": list(config.scope),
        "config": config.model_dump(mode="json"),
    }
    settings = engine_settings(config)
    costs = engine.Costs.of(model, stacks, before.counts)
    if config.validate_scores and config.heads != "none":
        with run.stage("profiling", "checking head scores against single-head ablation"):
            report["score_validation"] = validate_scores(loaded, stacks, data, run)
    with run.stage("profiling", "measuring each block's removal paths"):
        paths = engine.measure_paths(model, stacks, data.calibration, costs, settings, run.ticker("profiling", "block"))
        budget = _budget(config, scope_before, linear_before)
        if config.shape == "uniform":
            plan = plan_uniform(paths, {s.name: [b.name for b in s.blocks] for s in stacks}, budget)
        else:
            plan = plan_for_budget(paths, budget)
    method = head_method(config.heads)
    with run.stage("pruning_heads", f"head criterion {config.heads}"):
        method.prepare(_scoring_context(config, model, data, stacks, costs, plan, run))
    with run.timed("walk"):  # its blocks report as pruning_heads, then compressing_ffn, in turn
        walk = engine.walk(
            model,
            stacks,
            plan,
            data.calibration,
            method,
            costs,
            settings,
            (run.ticker("pruning_heads", "block"), run.ticker("compressing_ffn", "block")),
        )
    with run.stage("evaluating", "measuring the compressed model"):
        after = measure(model, adapter, data, config, reference=before, timing=False)
    achieved = scope_total(after.flops, config.scope) / scope_before
    achieved_linear = scope_total(after.counts.by_part(adapter, model, core=False), config.scope) / linear_before
    if config.target_flops_ratio is not None and achieved > config.target_flops_ratio + BUDGET_TOLERANCE:
        raise BudgetError(
            f"the budget {config.target_flops_ratio:.2f} cannot be met: the closest reachable is {achieved:.3f} "
            "of the scope's FLOPs"
        )
    quality = {"after_compression": after.fidelity}
    quality_other = {"after_compression": after.fidelity_other}
    accuracy_after = {"after_compression": after.accuracy} if data.evaluation else {}
    if config.recovery_steps > 0:
        with run.stage("recovering", "distillation from the original"):
            original = load_model(directory, config.device).model
            outcome = recover_if_closer(
                model,
                original,
                data.calibration,
                recovery_settings(config),
                blocks=[block.name for block in engine.iter_blocks(stacks)],
                distance=lambda m: float(fidelity(m, data.held_out, before.teachers)["divergence"]),
                projector=adapter.projector(model),
                on_step=run.ticker("recovering", "distillation step"),
            )
            del original
        with run.stage("evaluating", "measuring the recovered model"):
            recovered = measure(model, adapter, data, config, reference=before, timing=False)
            quality["after_recovery"] = recovered.fidelity
            quality_other["after_recovery"] = recovered.fidelity_other
            if data.evaluation:
                accuracy_after["after_recovery"] = recovered.accuracy
        report["recovery"] = {
            "steps": config.recovery_steps,
            "first_loss": outcome.losses[0],
            "last_loss": outcome.losses[-1],
            "kept": outcome.kept,
            "held_out_divergence": {"before": outcome.distance_before, "distilled": outcome.distance_after},
        }
    with run.stage("evaluating", "latency of the compressed model"):
        latency_after = data.latency(model, config) if config.measure_latency else None
    report.update(
        {
            "params": {"before": with_total(before.params), "after": with_total(after.params)},
            "flops": {
                "before": with_total(before.flops),
                "after": with_total(after.flops),
                "scope_ratio": achieved,
                "scope_ratio_linears": achieved_linear,  # linears and convolutions alone
                "target_scope_ratio": config.target_flops_ratio,
            },
            "latency": _latency_report(config, before.latency, latency_after, data),
            "fidelity": quality,
            "fidelity_other": {"source": data.other_source, **quality_other} if data.other else None,
            "plan": _plan_report(plan, scope_before),
            "heads": _heads_report(config, stacks, walk),
            "ffn": _ffn_report(config, model, stacks, walk),
            "stages_seconds": dict(run.timings),
            "versions": versions(),
        }
    )
    if data.evaluation:
        report["accuracy"] = {
            "eval_set": config.eval_set,
            "samples": len(data.evaluation),
            "before": before.accuracy,
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
            "budget": {
                "target_flops_ratio": config.target_flops_ratio,
                "head_keep_ratio": config.head_keep_ratio,
                "ffn_epsilon": config.ffn_epsilon,
            },
            "structure": {"attention": walk.kept_heads, "ffn_width": walk.widths, "ffn_rank": walk.ranks},
            "report": report,
        }
        output = save_compressed(model, directory, Path(output_dir), manifest)
    return CompressionResult(output, report)


def _scoring_context(
    config: CompressionConfig,
    model: torch.nn.Module,
    data: CalibrationData,
    stacks: list,
    costs: engine.Costs,
    plan: CompressionPlan,
    run: Run,
) -> ScoringContext:
    sites = [block.attention for block in engine.iter_blocks(stacks) if block.attention is not None]
    per_head = {}
    removed = 0.0
    for block in engine.iter_blocks(stacks):
        site = block.attention
        if site is None:
            continue
        cost = costs.attention[block.name]
        full = cost.flops(site.num_heads, site.num_kv_heads)
        per_head[site.name] = full - cost.flops(site.num_heads - 1, site.num_kv_heads - (site.group_size == 1))
        shape = plan.blocks[block.name].attention if block.name in plan.blocks else None
        if shape is not None:
            removed += full - cost.flops(shape.query_heads, shape.kv_groups)
    return ScoringContext(
        model=model,
        sites=sites,
        batches=data.calibration,
        held_out=data.held_out,
        seed=config.seed,
        gate_steps=config.gate_steps,
        per_head_flops=per_head,
        flops_to_remove=removed,
        on_step=run.ticker("pruning_heads", "scoring step"),
    )


def _plan_report(plan: CompressionPlan, scope_flops: float) -> dict[str, Any]:
    return {
        "flops_removed": plan.flops_removed,
        "planned_scope_ratio": 1 - plan.flops_removed / scope_flops,
        "expected_error": plan.expected_error,
        "blocks": {
            name: {
                "attention": None
                if block.attention is None
                else {"kv_groups": block.attention.kv_groups, "heads_per_group": block.attention.heads_per_group},
                "ffn_width": block.ffn_width,
                "ffn_energy_loss": None if block.ffn_low_rank is None else block.ffn_low_rank.energy_loss,
            }
            for name, block in plan.blocks.items()
        },
    }


def _heads_report(config: CompressionConfig, stacks: list, walk: engine.WalkReport) -> dict[str, Any]:
    layers = {}
    for block in engine.iter_blocks(stacks):
        site = block.attention
        if site is None:
            continue
        done = walk.blocks.get(block.name, {}).get("attention", {})
        layers[site.name] = {
            "part": site.part,
            "num_heads": site.num_heads,
            "num_kv_heads": site.num_kv_heads,
            "head_dim": site.head_dim,
            "kept": done.get("kept_heads", list(range(site.num_heads))),
            "refit_error": done.get("refit_error", 0.0),
        }
    return {"method": config.heads, "reconstruct": config.reconstruct, "layers": layers}


def _ffn_report(config: CompressionConfig, model: torch.nn.Module, stacks: list, walk: engine.WalkReport) -> dict:
    layers = {}
    for block in engine.iter_blocks(stacks):
        if block.ffn is None:
            continue
        done = walk.blocks.get(block.name, {}).get("ffn", {})
        layers[block.ffn.name] = {"part": block.ffn.part, **done}
    return {
        "method": config.ffn,
        "operator": ffn_operator(config),
        "widths": dict(walk.widths),
        "ranks": dict(walk.ranks),
        "layers": layers,
    }


def _latency_report(
    config: CompressionConfig, before: dict | None, after: dict | None, data: CalibrationData
) -> dict[str, Any]:
    if before is None or after is None:
        return {"measured": False}
    return {
        "measured": True,
        "device": home_device(config),
        "threads": torch.get_num_threads(),
        "batch": data.describe_timing_batch(),
        "before": before,
        "after": after,
        "speedup": before["median_ms"] / after["median_ms"],
    }
