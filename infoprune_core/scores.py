"""Head importance scores: InfoPrune's information criterion and the baselines, higher = keep.

All scores are dicts {site name: tensor [num_heads]}. Single-head ablation is the reference every
other score is checked against (`rank_correlation`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from infoprune_core.adapters.base import AttentionSite
from infoprune_core.objectives import divergence, model_output, self_supervised_loss
from infoprune_core.spectra import ks_distance, singular_values_from_gram
from infoprune_core.statistics import AttentionStats
from infoprune_core.surgery import get_linear, head_masks

Scores = dict[str, torch.Tensor]
Batches = Sequence[Mapping[str, torch.Tensor]]


def _drop_head(matrix: torch.Tensor, head: int, head_dim: int, dims: tuple[int, ...]) -> torch.Tensor:
    keep = torch.ones(matrix.shape[dims[0]], dtype=torch.bool)
    keep[head * head_dim : (head + 1) * head_dim] = False
    for dim in dims:
        matrix = matrix.index_select(dim, keep.nonzero().squeeze(1).to(matrix.device))
    return matrix


def _psd_sqrt(gram: torch.Tensor) -> torch.Tensor:
    eigenvalues, vectors = torch.linalg.eigh(gram)
    return (vectors * eigenvalues.clamp_min(0).sqrt()) @ vectors.T


def head_ks(site: AttentionSite, stats: AttentionStats, o_weight: torch.Tensor | None) -> torch.Tensor:
    """KS_h: how far removing head h alone moves the spectrum of the layer's attention output.

    With `o_weight` (the output projection) the spectrum is that of the layer output after o, and
    both spectra are normalised by the unpruned total (scale-aware: a head carrying much energy
    moves it a lot). Without it, the spectrum of the concatenated head outputs, each spectrum
    normalised by its own sum (the paper's definition).
    """
    gram = stats.gram
    values = []
    if o_weight is None:
        reference = singular_values_from_gram(gram)
        for head in range(site.num_heads):
            reduced = singular_values_from_gram(_drop_head(gram, head, site.head_dim, (0, 1)))
            values.append(ks_distance(reference, reduced))
    else:
        weight = o_weight.to(gram.dtype)
        reference = torch.linalg.svdvals(weight @ _psd_sqrt(gram))
        for head in range(site.num_heads):
            reduced_gram = _drop_head(gram, head, site.head_dim, (0, 1))
            reduced_weight = _drop_head(weight, head, site.head_dim, (1,))
            reduced = torch.linalg.svdvals(reduced_weight @ _psd_sqrt(reduced_gram))
            values.append(ks_distance(reference, reduced, scale_aware=True))
    return torch.stack(values).float()


def information_scores(
    model: nn.Module, sites: Sequence[AttentionSite], stats: Mapping[str, AttentionStats], scale_aware: bool
) -> Scores:
    """S_h = (eRank_h / head_dim) x KS_h per head."""
    scores = {}
    for site in sites:
        o_weight = get_linear(model, site.o).weight.detach() if scale_aware else None
        ks = head_ks(site, stats[site.name], o_weight)
        scores[site.name] = (stats[site.name].erank.float() / site.head_dim) * ks
    return scores


def random_scores(sites: Sequence[AttentionSite], seed: int) -> Scores:
    generator = torch.Generator().manual_seed(seed)
    return {site.name: torch.rand(site.num_heads, generator=generator) for site in sites}


def l1_scores(model: nn.Module, sites: Sequence[AttentionSite]) -> Scores:
    """L1 norm of each head's columns of the output projection."""
    scores = {}
    for site in sites:
        weight = get_linear(model, site.o).weight.detach().abs()
        scores[site.name] = weight.unflatten(1, (site.num_heads, site.head_dim)).sum((0, 2)).float()
    return scores


def taylor_scores(model: nn.Module, sites: Sequence[AttentionSite], batches: Batches) -> Scores:
    """First-order Taylor: |d loss / d mask_h| accumulated over batches, self-supervised loss."""
    masks = {site.o: torch.ones(site.num_heads, requires_grad=True) for site in sites}
    with head_masks(model, masks):
        for batch in batches:
            output, logits = model_output(model, batch)
            loss = self_supervised_loss(output, logits, batch.get("attention_mask"))
            loss.backward()
    scores = {}
    for site in sites:
        gradient = masks[site.o].grad
        scores[site.name] = torch.zeros(site.num_heads) if gradient is None else gradient.abs().detach()
    model.zero_grad(set_to_none=True)
    return scores


def entropy_scores(model: Any, sites: Sequence[AttentionSite], batches: Batches) -> Scores:
    """Negative mean attention entropy per head (focused heads score high), from eager attention."""
    sums: dict[str, torch.Tensor] = {}
    counts: dict[str, int] = {}
    handles = []

    def capture(name: str) -> Callable:
        def hook(_: nn.Module, __: tuple, output: tuple) -> None:
            weights = output[1] if isinstance(output, tuple) and len(output) > 1 else None
            if weights is None:
                return
            entropy = -(weights * weights.clamp_min(1e-12).log()).sum(-1)  # [B, H, T]
            sums[name] = sums.get(name, 0) + entropy.mean(-1).sum(0).detach()
            counts[name] = counts.get(name, 0) + weights.shape[0]

        return hook

    previous = getattr(model.config, "_attn_implementation", None)
    model.set_attn_implementation("eager")
    for site in sites:
        handles.append(model.get_submodule(site.name).register_forward_hook(capture(site.name)))
    try:
        with torch.no_grad():
            for batch in batches:
                model(**batch)
    finally:
        for handle in handles:
            handle.remove()
        if previous:
            model.set_attn_implementation(previous)
    missing = [site.name for site in sites if site.name not in sums]
    if missing:
        raise RuntimeError(f"no attention weights captured at {missing[:3]}")
    return {site.name: -(sums[site.name] / counts[site.name]).float() for site in sites}


def teacher_outputs(model: nn.Module, batches: Batches) -> list[tuple[torch.Tensor, bool]]:
    with torch.no_grad():
        return [model_output(model, batch) for batch in batches]


def ablation_scores(
    model: nn.Module,
    sites: Sequence[AttentionSite],
    batches: Batches,
    teachers: Sequence[tuple[torch.Tensor, bool]],
    on_head: Callable[[int, int], None] | None = None,
) -> Scores:
    """Damage (distillation loss vs the unpruned model) of removing each head alone."""
    total = sum(site.num_heads for site in sites)
    done = 0
    scores = {}
    for site in sites:
        damage = torch.zeros(site.num_heads)
        for head in range(site.num_heads):
            mask = torch.ones(site.num_heads)
            mask[head] = 0
            with torch.no_grad(), head_masks(model, {site.o: mask}):
                for batch, (teacher, logits) in zip(batches, teachers, strict=True):
                    student, _ = model_output(model, batch)
                    damage[head] += float(divergence(student, teacher, logits, batch.get("attention_mask")))
            done += 1
            if on_head is not None:
                on_head(done, total)
        scores[site.name] = damage / max(len(batches), 1)
    return scores


def rank_correlation(scores: Scores, reference: Scores) -> float:
    """Spearman correlation between two scores over all heads (pooled across layers)."""
    a = torch.cat([scores[name] for name in reference]).double()
    b = torch.cat([reference[name] for name in reference]).double()
    if a.numel() < 2:
        return float("nan")
    rank_a = a.argsort().argsort().double()
    rank_b = b.argsort().argsort().double()
    rank_a -= rank_a.mean()
    rank_b -= rank_b.mean()
    denominator = (rank_a.norm() * rank_b.norm()).clamp_min(1e-12)
    return float((rank_a @ rank_b) / denominator)
