"""Training-based head pruning: hard-concrete gates on frozen weights under an information-loss objective.

Loss = distillation from the unpruned model + beta x KS alignment of each layer's attention-output
spectrum + gamma x redundancy (1 - eRank of the kept layer output / sum of kept heads' eRank) + a
Lagrangian that drives the expected attention FLOPs to the budget (multipliers trained by ascent).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from infoprune_core.adapters.base import AttentionSite
from infoprune_core.calibration.statistics import AttentionStats, StatisticsCollector
from infoprune_core.heads.base import GlobalScores, Scores, ScoringContext, register
from infoprune_core.heads.information import information_scores
from infoprune_core.objectives import TeacherOutputs, divergence, model_output
from infoprune_core.spectra import effective_rank, singular_values_from_gram
from infoprune_core.surgery import head_masks

LEFT, RIGHT, TEMPERATURE = -0.1, 1.1, 2.0 / 3.0


@dataclass(frozen=True)
class GateSettings:
    steps: int = 150
    learning_rate: float = 0.1
    beta: float = 0.1  # KS alignment weight
    gamma: float = 0.05  # redundancy weight
    seed: int = 0


class HardConcreteGates(nn.Module):
    """One hard-concrete gate per head (Louizos et al.), keyed by the site's o-projection path."""

    def __init__(self, init: Mapping[str, torch.Tensor]) -> None:
        super().__init__()
        self.keys = list(init)
        self.log_alpha = nn.ParameterList([nn.Parameter(init[key].float().clone()) for key in self.keys])

    def sample(self) -> dict[str, torch.Tensor]:
        gates = {}
        for key, log_alpha in zip(self.keys, self.log_alpha, strict=True):
            u = torch.rand_like(log_alpha).clamp(1e-6, 1 - 1e-6)
            s = torch.sigmoid((u.log() - (1 - u).log() + log_alpha) / TEMPERATURE)
            gates[key] = (s * (RIGHT - LEFT) + LEFT).clamp(0, 1)
        return gates

    def open_probability(self) -> dict[str, torch.Tensor]:
        shift = TEMPERATURE * math.log(-LEFT / RIGHT)
        return {k: torch.sigmoid(a - shift) for k, a in zip(self.keys, self.log_alpha, strict=True)}


def initial_log_alpha(scores: torch.Tensor) -> torch.Tensor:
    """Gates start open (about 0.9), ordered like the score so training begins from the criterion."""
    ranks = scores.argsort().argsort().float()
    spread = ranks / max(scores.numel() - 1, 1) - 0.5
    return 2.0 + spread


def _spectral_terms(
    captured: Mapping[str, torch.Tensor],
    gates: Mapping[str, torch.Tensor],
    sites: Sequence[AttentionSite],
    stats: Mapping[str, AttentionStats],
    reference_cdfs: Mapping[str, torch.Tensor],
) -> tuple[torch.Tensor, torch.Tensor]:
    """KS alignment and redundancy summed over layers, from this batch's gated head outputs."""
    ks_total = torch.zeros((), dtype=torch.float64)
    redundancy_total = torch.zeros((), dtype=torch.float64)
    for site in sites:
        x = captured[site.o].reshape(-1, site.num_heads * site.head_dim).double()
        gram = x.T @ x
        gram = gram + 1e-6 * gram.diagonal().mean().clamp_min(1e-12) * torch.eye(gram.shape[0], dtype=gram.dtype)
        spectrum = singular_values_from_gram(gram)
        cdf = spectrum.cumsum(0) / spectrum.sum()
        ks_total = ks_total + (cdf - reference_cdfs[site.name]).abs().max()
        kept_erank = (gates[site.o].double() * stats[site.name].erank).sum().clamp_min(1e-6)
        redundancy_total = redundancy_total + (1 - effective_rank(spectrum) / kept_erank).clamp_min(0)
    return ks_total / len(sites), redundancy_total / len(sites)


def train_gates(
    model: nn.Module,
    sites: Sequence[AttentionSite],
    stats: Mapping[str, AttentionStats],
    initial_scores: Mapping[str, torch.Tensor],
    per_head_flops: Mapping[str, float],
    target_removed_flops: float,
    batches: Sequence[Mapping[str, torch.Tensor]],
    settings: GateSettings,
    on_step: Callable[[int, int], None] | None = None,
) -> dict[str, torch.Tensor]:
    """Train gates with frozen weights; returns the learnt log-alpha per site name (higher = keep)."""
    torch.manual_seed(settings.seed)
    gates = HardConcreteGates({site.o: initial_log_alpha(initial_scores[site.name]) for site in sites})
    multipliers = nn.Parameter(torch.zeros(2))
    optimiser = torch.optim.Adam(gates.parameters(), lr=settings.learning_rate)
    ascent = torch.optim.Adam([multipliers], lr=settings.learning_rate)
    total_flops = sum(per_head_flops[s.name] * s.num_heads for s in sites)
    target = 1 - target_removed_flops / max(total_flops, 1e-9)
    captured: dict[str, torch.Tensor] = {}
    handles = []
    teacher_outputs = TeacherOutputs(model)
    reference_cdfs = {}
    for site in sites:
        reference = singular_values_from_gram(stats[site.name].gram)
        reference_cdfs[site.name] = reference.cumsum(0) / reference.sum()
    requires_grad = [p.requires_grad for p in model.parameters()]
    model.requires_grad_(False)
    try:
        for step in range(settings.steps):
            batch = batches[step % len(batches)]
            teacher, logits = teacher_outputs(step % len(batches), batch)
            sampled = gates.sample()
            with head_masks(model, sampled):
                handles = [_capture(model, site.o, captured) for site in sites]
                student, _ = model_output(model, batch)
                for handle in handles:
                    handle.remove()
            distill = divergence(student, teacher, logits, batch.get("attention_mask"))
            ks, redundancy = _spectral_terms(captured, sampled, sites, stats, reference_cdfs)
            probability = gates.open_probability()
            expected = sum((probability[s.o] * per_head_flops[s.name]).sum() for s in sites) / max(total_flops, 1e-9)
            gap = expected - target
            lagrangian = multipliers[0] * gap + multipliers[1] * gap * gap
            loss = distill + settings.beta * ks.float() + settings.gamma * redundancy.float() + lagrangian
            optimiser.zero_grad()
            ascent.zero_grad()
            if torch.isfinite(loss):
                loss.backward()
                for parameter in gates.parameters():
                    if parameter.grad is not None:
                        torch.nan_to_num_(parameter.grad, nan=0.0, posinf=0.0, neginf=0.0)
                if multipliers.grad is not None:
                    multipliers.grad.neg_()  # ascent on the multipliers
                optimiser.step()
                ascent.step()
            captured.clear()
            if on_step is not None:
                on_step(step + 1, settings.steps)
    finally:
        for parameter, flag in zip(model.parameters(), requires_grad, strict=True):
            parameter.requires_grad_(flag)
    return {site.name: alpha.detach().clone() for site, alpha in zip(sites, gates.log_alpha, strict=True)}


def _capture(model: nn.Module, o_path: str, captured: dict[str, torch.Tensor]) -> torch.utils.hooks.RemovableHandle:
    def hook(_: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        captured[o_path] = args[0]

    return model.get_submodule(o_path).register_forward_pre_hook(hook)


@register
class Gates(GlobalScores):
    """The paper's training-based criterion: gates trained toward the plan's attention FLOPs, started
    from eRank x KS; the learnt log-alpha ranks the heads."""

    name = "infoprune"

    def compute(self, context: ScoringContext) -> Scores:
        collector = StatisticsCollector(context.model, context.sites, [])
        for batch in context.batches:
            collector.observe(batch)
        stats = collector.close().attention
        initial = information_scores(context.model, context.sites, stats, scale_aware=True)
        return train_gates(
            context.model,
            context.sites,
            stats,
            initial,
            context.per_head_flops,
            context.flops_to_remove,
            context.batches,
            GateSettings(steps=context.gate_steps, seed=context.seed),
            on_step=context.on_step,
        )
