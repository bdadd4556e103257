"""`infoprune profile`: head scores, FFN spectra, FLOPs and params of a model, without changing it."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from infoprune_core.adapters.base import AttentionSite, FFNSite
from infoprune_core.calibration.statistics import CalibrationStats
from infoprune_core.config import CompressionConfig
from infoprune_core.evaluation import with_total
from infoprune_core.ffn.lowrank import Factors, factorise
from infoprune_core.heads.information import information_scores
from infoprune_core.heads.validation import validate_scores
from infoprune_core.modeling import load_model
from infoprune_core.plan.flops import count_flops, parameter_count_by_part
from infoprune_core.progress import ProgressCallback, no_progress
from infoprune_core.run import Run, collect_statistics, default_cache_dir, prepare_data, scope_stacks
from infoprune_core.sources import resolve_source
from infoprune_core.spectra import effective_rank, truncation_ks
from infoprune_core.surgery import get_linear


def head_profile(model: torch.nn.Module, sites: Sequence[AttentionSite], stats: CalibrationStats) -> dict[str, Any]:
    """Per layer: eRank, S_h (the paper's and the scale-aware variant), and the layout."""
    paper = information_scores(model, sites, stats.attention, scale_aware=False)
    aware = information_scores(model, sites, stats.attention, scale_aware=True)
    return {
        site.name: {
            "part": site.part,
            "num_heads": site.num_heads,
            "num_kv_heads": site.num_kv_heads,
            "head_dim": site.head_dim,
            "erank": stats.attention[site.name].erank.float().tolist(),
            "score_paper": paper[site.name].tolist(),
            "score_scale_aware": aware[site.name].tolist(),
        }
        for site in sites
    }


def ffn_spectra(
    model: torch.nn.Module, sites: Sequence[FFNSite], stats: CalibrationStats, ridge: float
) -> dict[str, Any]:
    """Per FFN linear: whitened singular values summarised (eRank and ranks at 1%, 5%, 10% KS loss)."""
    spectra = {}
    for site in sites:
        for path in (*site.inputs, site.output):
            moments = (stats.ffn_hidden if path == site.output else stats.ffn_input)[site.name]
            spectra[path] = _spectrum(factorise(get_linear(model, path).weight.detach(), moments.gram, ridge))
    return spectra


def _spectrum(factors: Factors) -> dict[str, Any]:
    losses = truncation_ks(factors.s)
    return {
        "shape": list(factors.shape),
        "erank": float(effective_rank(factors.s)),
        "rank_at_ks": {str(eps): int((losses > eps).sum()) + 1 for eps in (0.01, 0.05, 0.1)},
        "break_even_rank": factors.break_even,
    }


def profile(
    source: str, config: CompressionConfig, progress: ProgressCallback | None = None, cache_dir: Path | None = None
) -> dict[str, Any]:
    """Scores and FLOPs without changing anything."""
    torch.set_num_threads(config.threads)
    run = Run(config, progress or no_progress)
    with run.stage("loading", f"loading {source}"):
        loaded = load_model(resolve_source(source, cache_dir or default_cache_dir()), config.device)
        data = prepare_data(config, loaded)
    model, adapter = loaded.model, loaded.adapter
    stacks = scope_stacks(adapter, model, config.scope)
    sites = [b.attention for s in stacks for b in s.blocks if b.attention is not None]
    ffn_sites = [b.ffn for s in stacks for b in s.blocks if b.ffn is not None]
    with run.stage("profiling", "calibration statistics"):
        counts = count_flops(model, adapter.attention_sites(model), data.flop_input)
        stats = collect_statistics(model, sites, ffn_sites, data.calibration, run, "profiling")
        result: dict[str, Any] = {
            "model": {"source": source, "model_type": loaded.config["model_type"]},
            "input": data.describe_flop_input(),
            "flops": with_total(counts.by_part(adapter, model)),
            "params": with_total(parameter_count_by_part(model, adapter)),
            "layers": head_profile(model, sites, stats),
            "ffn_spectra": ffn_spectra(model, ffn_sites, stats, config.ridge),
            "flops_per_module": {**counts.modules, **{f"{k} (QK^T, AV)": v for k, v in counts.attention_core.items()}},
            "params_per_module": {name: p.numel() for name, p in model.named_parameters()},
        }
        for site in sites:
            result["layers"][site.name]["attention_flops"] = counts.attention_core.get(site.name, 0.0) + sum(
                counts.modules.get(path, 0.0) for path in (site.q, site.k, site.v, site.o)
            )
        if config.validate_scores and sites:
            result["score_validation"] = validate_scores(loaded, stacks, data, run)
    return result
