"""Baseline head criteria: random, L1 magnitude, first-order Taylor, attention entropy.

All score every head once on the original model (higher = keep).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from infoprune_core.adapters.base import AttentionSite
from infoprune_core.heads.base import GlobalScores, Scores, ScoringContext, register
from infoprune_core.objectives import model_output, self_supervised_loss
from infoprune_core.surgery import get_linear, head_masks

Batches = Sequence[Mapping[str, torch.Tensor]]


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


@register
class RandomHeads(GlobalScores):
    name = "random"

    def compute(self, context: ScoringContext) -> Scores:
        return random_scores(context.sites, context.seed)


@register
class L1Heads(GlobalScores):
    name = "l1"

    def compute(self, context: ScoringContext) -> Scores:
        return l1_scores(context.model, context.sites)


@register
class TaylorHeads(GlobalScores):
    name = "taylor"

    def compute(self, context: ScoringContext) -> Scores:
        return taylor_scores(context.model, context.sites, context.batches)


@register
class EntropyHeads(GlobalScores):
    name = "entropy"

    def compute(self, context: ScoringContext) -> Scores:
        return entropy_scores(context.model, context.sites, context.batches)
