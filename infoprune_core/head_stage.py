"""The head stage: scores, the per-layer profile, validation against ablation, and the head budget."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from infoprune_core.adapters.base import AttentionSite
from infoprune_core.config import CompressionConfig
from infoprune_core.errors import BudgetError
from infoprune_core.modeling import LoadedModel
from infoprune_core.run import Batch, Run
from infoprune_core.scores import (
    Scores,
    ablation_scores,
    entropy_scores,
    information_scores,
    l1_scores,
    random_scores,
    rank_correlation,
    taylor_scores,
)
from infoprune_core.statistics import CalibrationStats


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
