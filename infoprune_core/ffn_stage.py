"""The FFN stage: plan and apply FFN compression on the head-pruned model, calibrated on it."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from infoprune_core import ffn as ffn_compression
from infoprune_core.adapters.base import FFNSite
from infoprune_core.config import CompressionConfig
from infoprune_core.flops import FlopCount, count_flops
from infoprune_core.modeling import LoadedModel
from infoprune_core.progress import Stage
from infoprune_core.run import Batch, Run, collect_statistics, scope_total
from infoprune_core.spectra import effective_rank, truncation_ks
from infoprune_core.statistics import CalibrationStats


def compress_ffns(
    loaded: LoadedModel,
    sites: Sequence[FFNSite],
    config: CompressionConfig,
    method: str,
    batches: Sequence[Batch],
    flop_input: Batch,
    scope_before: float,
    run: Run,
    stage: Stage = "compressing_ffn",
    stats: CalibrationStats | None = None,
) -> dict[str, Any]:
    """Plan and apply FFN compression by `method` on the (head-pruned) model, calibrated on it.

    `stats` are FFN statistics already collected on this very model (the planner shares one pass
    between FFN operators); without them a calibration pass collects them.
    """
    model, adapter = loaded.model, loaded.adapter
    empty: dict[str, Any] = {"method": method, "widths": {}, "ranks": {}}
    if method == "none" or not sites:
        return empty
    if config.target_flops_ratio is None and config.ffn_epsilon is None:
        return empty
    counts = count_flops(model, adapter.attention_sites(model), flop_input)
    if stats is None:
        stats = collect_statistics(loaded, [], sites, batches, run, stage)
    dense = ffn_compression.dense_ffn_flops(sites, counts)
    if method == "width":
        widths = ffn_compression.width_scores(model, sites, stats, counts)
        factors: list[ffn_compression.LinearFactors] = []

        def plan_at(epsilon: float) -> ffn_compression.FFNPlan:
            return ffn_compression.width_plan(widths, epsilon)
    else:
        widths = []
        factors = ffn_compression.factorise_all(model, sites, stats, counts, whitened=method == "whitened_svd")

        def plan_at(epsilon: float) -> ffn_compression.FFNPlan:
            return ffn_compression.low_rank_plan(factors, epsilon, uniform=method == "uniform")

    if config.ffn_epsilon is not None:
        plan = plan_at(config.ffn_epsilon)
    else:
        assert config.target_flops_ratio is not None
        scope_now = scope_total(counts.by_part(adapter, model), config.scope)
        target = config.target_flops_ratio * scope_before - (scope_now - dense)
        plan = ffn_compression.bisect_epsilon(plan_at, target, dense)
    ffn_compression.apply_plan(model, plan, factors, widths)
    return {
        "method": method,
        "epsilon": plan.epsilon,
        "dense_flops": dense,
        "planned_flops": plan.flops,
        "widths": {name: width for name, width in plan.widths.items() if width is not None},
        "ranks": {path: rank for path, rank in plan.ranks.items() if rank is not None},
    }


@contextmanager
def ffn_modules_restored(model: nn.Module, sites: Sequence[FFNSite]) -> Iterator[None]:
    """Put the FFN linears of `sites` back as they were on exit (compression replaces them)."""
    paths = [path for site in sites for path in (*site.inputs, site.output)]
    saved = {path: model.get_submodule(path) for path in paths}
    try:
        yield
    finally:
        for path, module in saved.items():
            model.set_submodule(path, module)


def ffn_spectra(model: torch.nn.Module, sites: Sequence[FFNSite], stats: CalibrationStats) -> dict[str, Any]:
    """Per FFN linear: whitened singular values summarised (eRank and ranks at 1%, 5%, 10% KS loss)."""
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
