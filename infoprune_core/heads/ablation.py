"""Single-head ablation: the damage of removing each head alone, the reference every score is checked
against (slow: one pass over the held-out batches per head)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch
from torch import nn

from infoprune_core.adapters.base import AttentionSite
from infoprune_core.heads.base import GlobalScores, Scores, ScoringContext, register
from infoprune_core.objectives import divergence, model_output, teacher_outputs
from infoprune_core.surgery import head_masks

Batches = Sequence[Mapping[str, torch.Tensor]]


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
                    damage[head] += float(divergence(student, teacher.float(), logits, batch.get("attention_mask")))
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


@register
class AblationHeads(GlobalScores):
    """Keep the heads whose removal alone hurts most (measured on held-out batches)."""

    name = "ablation"

    def compute(self, context: ScoringContext) -> Scores:
        teachers = teacher_outputs(context.model, context.held_out)
        return ablation_scores(context.model, context.sites, context.held_out, teachers, context.on_step)
