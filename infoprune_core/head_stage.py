"""The head stage: scores, the per-layer profile, validation against ablation, and the head budget."""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from infoprune_core.adapters.base import AttentionSite, FFNSite
from infoprune_core.config import CompressionConfig
from infoprune_core.errors import BudgetError
from infoprune_core.evaluation import fidelity, latency
from infoprune_core.ffn_stage import compress_ffns, ffn_modules_restored
from infoprune_core.head_selection import select_heads
from infoprune_core.modeling import LoadedModel
from infoprune_core.run import Batch, Run, collect_statistics
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
from infoprune_core.statistics import CalibrationStats
from infoprune_core.surgery import prune_heads

# Multiples of the even split of the cut between heads and FFNs that the planner tries.
HEAD_SHARES = (0.5, 1.0, 1.5)
AUTO_FFN_METHODS = ("whitened_svd", "width")
DEFAULT_FFN = "whitened_svd"  # ffn=auto without a planner search
PROBE_BATCHES = 2
# An FFN operator slower than another at the same head share by more than this does not turn its
# FLOPs into time (thin factorised matmuls run slower than their FLOPs say).
LATENCY_SLACK = 1.05


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


def max_head_removal(sites: Sequence[AttentionSite], per_head: Mapping[str, float]) -> float:
    """Attention FLOPs removable while every KV group keeps one query head (one head for MHA)."""
    return sum(per_head[s.name] * (s.num_heads - (s.num_kv_heads if s.group_size > 1 else 1)) for s in sites)


def choose_plan(
    loaded: LoadedModel,
    sites: Sequence[AttentionSite],
    ffn_sites: Sequence[FFNSite],
    scores: Scores,
    per_head: Mapping[str, float],
    even_removal: float,
    ffn_methods: Sequence[str],
    config: CompressionConfig,
    batches: Sequence[Batch],
    flop_input: Batch,
    scope_before: float,
    run: Run,
) -> tuple[float, str, list[dict[str, Any]]]:
    """Split the cut between heads and FFNs and pick the FFN operator: try a few head shares x FFN
    methods training-free (these scores, then the FFN stage) on copies of the model, and keep the
    one whose output moves least on calibration batches, after dropping every FFN operator that runs
    slower than another at the same head share by more than LATENCY_SLACK (equal FLOPs, less speed)."""
    probe = list(batches[:PROBE_BATCHES])
    teachers = teacher_outputs(loaded.model, probe)
    ceiling = max_head_removal(sites, per_head)
    removals: list[tuple[float, float]] = []
    for share in HEAD_SHARES if sites else (0.0,):
        removal = min(share * even_removal, ceiling)
        if all(abs(removal - other) > 1e-6 * max(removal, 1.0) for _, other in removals):
            removals.append((share, removal))
    trials = len(removals) * len(ffn_methods)
    candidates: list[dict[str, Any]] = []
    for share, removal in removals:
        # One head-pruned copy and one calibration pass per head share; every FFN operator is tried
        # on it in turn and its FFN modules are put back afterwards.
        trial = dataclasses.replace(loaded, model=copy.deepcopy(loaded.model))
        kept = select_heads(sites, scores, per_head, removal)
        for site in sites:
            if len(kept[site.name]) < site.num_heads:
                prune_heads(trial.model, site, kept[site.name])
        stats = collect_statistics(trial, [], ffn_sites, batches, run, "pruning_heads")
        for method in ffn_methods:
            candidate: dict[str, Any] = {"head_share": share, "head_flops_removed": removal, "ffn": method}
            with ffn_modules_restored(trial.model, ffn_sites):
                try:
                    compress_ffns(trial, ffn_sites, config, method, batches, flop_input, scope_before, run, stats=stats)
                    candidate["divergence"] = fidelity(trial.model, probe, teachers)["divergence"]
                    # The minimum of a few runs: the estimate least moved by other load on the machine.
                    timing = latency(trial.model, probe[0], repeats=5, warmup=1)
                    candidate["latency_ms"] = timing["min_ms"]
                except BudgetError as error:
                    candidate["infeasible"] = str(error)
            candidates.append(candidate)
            done = len(candidates)
            run.emit("pruning_heads", done / (trials + 1), f"planner trial {done}/{trials}")
        del trial, stats
    feasible = [c for c in candidates if "divergence" in c]
    if not feasible:
        return even_removal, ffn_methods[0], candidates
    fastest = {share: min(c["latency_ms"] for c in feasible if c["head_share"] == share) for share, _ in removals}
    fast_enough = [c for c in feasible if c["latency_ms"] <= LATENCY_SLACK * fastest[c["head_share"]]]
    best = min(fast_enough, key=lambda c: c["divergence"])
    best["chosen"] = True
    return float(best["head_flops_removed"]), str(best["ffn"]), candidates
