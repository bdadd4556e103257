"""Cutting the heads of one attention block within a planned shape, then re-fitting its output projection."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from infoprune_core.adapters.base import AttentionSite
from infoprune_core.calibration.block import BlockStatistics
from infoprune_core.calibration.moments import InputMoments
from infoprune_core.heads.base import HeadImportance
from infoprune_core.heads.selection import HeadRemoval, head_columns
from infoprune_core.plan.flops import AttentionCost
from infoprune_core.plan.types import AttentionShape, PathPoint
from infoprune_core.reconstruction import RemovalPath, kept_columns, ridge_refit
from infoprune_core.surgery import augmented_weight, prune_heads, write_augmented


def head_removal(
    model: nn.Module,
    site: AttentionSite,
    moments: InputMoments,
    cost: AttentionCost,
    ridge: float,
    scores: torch.Tensor | None = None,
) -> HeadRemoval:
    path = RemovalPath(augmented_weight(model, site.o), moments.gram, ridge, protected=int(moments.bias))
    return HeadRemoval(site, path, cost, scores)


def attention_path(
    model: nn.Module, site: AttentionSite, moments: InputMoments, cost: AttentionCost, ridge: float
) -> list[PathPoint]:
    """The block's head-removal path by re-fit error (errors in the units of the Gram matrix)."""
    return head_removal(model, site, moments, cost, ridge).path_points()


def attention_shape_points(
    model: nn.Module, site: AttentionSite, moments: InputMoments, cost: AttentionCost, ridge: float
) -> tuple[PathPoint, ...]:
    """Every GQA-valid head layout of the block with the re-fit error of reaching it (for uniform plans)."""
    full, full_core = cost.flops(site.num_heads, site.num_kv_heads), cost.core(site.num_heads)
    points = []
    for groups in range(1, site.num_kv_heads + 1):
        for per_group in range(1, site.group_size + 1):
            removal = head_removal(model, site, moments, cost, ridge)
            removal.reach(AttentionShape(groups, per_group))
            points.append(removal.point(full, full_core))
    return tuple(points)


def cut_heads(
    model: nn.Module,
    site: AttentionSite,
    shape: AttentionShape,
    stats: BlockStatistics,
    method: HeadImportance,
    cost: AttentionCost,
    ridge: float,
    reconstruct: bool,
) -> dict[str, Any]:
    """Remove heads down to `shape` (chosen by `method`), re-fit the output projection; report what was done."""
    moments = stats.heads
    assert moments is not None
    original = augmented_weight(model, site.o)
    scores = method.block_scores(site, stats.head_statistics, original[:, : moments.features])
    removal = head_removal(model, site, moments, cost, ridge, scores)
    kept = removal.reach(shape)
    prune_heads(model, site, kept)
    if reconstruct:
        columns = kept_columns(head_columns(kept, site.head_dim), moments.features, moments.bias)
        refit = ridge_refit(original, moments.gram, columns, ridge, moments.features, cross=moments.cross)
        write_augmented(model, site.o, refit)
    return {"kept_heads": kept, "refit_error": removal.path.error / max(stats.energy, 1e-30)}
