"""Training-free FFN compression: adaptive low-rank factorisation or width pruning under a FLOP budget.

Each method turns one global knob epsilon (the KS / energy loss allowed per matrix) into a plan
(rank per linear, or width per FFN); `plan_for_budget` finds epsilon by bisection so the FFN FLOPs
meet a target, and `apply_plan` edits the model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from infoprune_core.adapters.base import FFNSite
from infoprune_core.calibration.statistics import CalibrationStats
from infoprune_core.errors import BudgetError
from infoprune_core.plan.flops import FlopCount
from infoprune_core.spectra import truncation_ks
from infoprune_core.surgery import factorise_linear, get_linear, prune_ffn_width


@dataclass
class LinearFactors:
    """SVD of W (or of W whitened by the input's Cholesky factor L): W L = U diag(s) Vh."""

    path: str
    u: torch.Tensor
    s: torch.Tensor
    vh: torch.Tensor
    whitening: torch.Tensor | None  # L, lower triangular, or None for plain SVD
    tokens: int

    @property
    def shape(self) -> tuple[int, int]:
        return self.u.shape[0], self.vh.shape[1]

    @property
    def break_even(self) -> int:
        """Largest rank that still saves compute: r < in*out/(in+out)."""
        out_features, in_features = self.shape
        return max(int((in_features * out_features - 1) // (in_features + out_features)), 0)

    def dense_flops(self) -> float:
        out_features, in_features = self.shape
        return 2.0 * self.tokens * in_features * out_features

    def flops(self, rank: int | None) -> float:
        out_features, in_features = self.shape
        return self.dense_flops() if rank is None else 2.0 * self.tokens * rank * (in_features + out_features)

    def factors(self, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(down [r, in], up [out, r]) with W ~ up @ down; singular values split evenly."""
        root = self.s[:rank].sqrt()
        down = root[:, None] * self.vh[:rank]
        if self.whitening is not None:
            # down @ L^-1, computed as a triangular solve: X L = down  <=>  L^T X^T = down^T
            down = torch.linalg.solve_triangular(self.whitening.T, down.T, upper=True).T
        return down, self.u[:, :rank] * root[None, :]


@dataclass
class FFNPlan:
    """Per linear: a rank (factorised) or None (dense); per FFN site: kept width or None."""

    epsilon: float
    ranks: dict[str, int | None] = field(default_factory=dict)
    widths: dict[str, int | None] = field(default_factory=dict)
    flops: float = 0.0


def whitening_factor(covariance: torch.Tensor) -> torch.Tensor:
    """Cholesky factor of the input second moment, with a little damping for stability."""
    damping = 1e-4 * covariance.diagonal().mean().clamp_min(1e-12)
    eye = torch.eye(covariance.shape[0], dtype=covariance.dtype, device=covariance.device)
    for attempt in range(6):
        factor, info = torch.linalg.cholesky_ex(covariance + damping * (10**attempt) * eye)
        if int(info) == 0:
            return factor
    raise RuntimeError("input covariance is not positive definite even after damping")


def factorise_all(
    model: nn.Module, sites: Sequence[FFNSite], stats: CalibrationStats, counts: FlopCount, whitened: bool
) -> list[LinearFactors]:
    """One SVD per FFN linear (whitened by its input covariance when asked)."""
    factors = []
    for site in sites:
        for path in (*site.inputs, site.output):
            covariance = (stats.ffn_hidden if path == site.output else stats.ffn_input)[site.name].covariance
            weight = get_linear(model, path).weight.detach().double()
            whitening = whitening_factor(covariance.double()) if whitened else None
            u, s, vh = torch.linalg.svd(weight @ whitening if whitening is not None else weight, full_matrices=False)
            factors.append(LinearFactors(path, u, s, vh, whitening, counts.tokens.get(path, 0)))
    return factors


def rank_for(factors: LinearFactors, epsilon: float) -> int | None:
    """Smallest rank whose KS loss is <= epsilon; None (stay dense) when it would not save compute."""
    losses = truncation_ks(factors.s)
    rank = int((losses > epsilon).sum()) + 1
    return rank if rank <= factors.break_even else None


def low_rank_plan(all_factors: Sequence[LinearFactors], epsilon: float, uniform: bool) -> FFNPlan:
    """Ranks for one epsilon; `uniform` keeps the same fraction (1 - epsilon) of every matrix's rank."""
    plan = FFNPlan(epsilon)
    for factors in all_factors:
        rank: int | None
        if uniform:
            uniform_rank = max(round((1 - epsilon) * factors.s.numel()), 1)
            rank = uniform_rank if uniform_rank <= factors.break_even else None
        else:
            rank = rank_for(factors, epsilon)
        plan.ranks[factors.path] = rank
        plan.flops += factors.flops(rank)
    return plan


@dataclass
class WidthScores:
    site: FFNSite
    importance: torch.Tensor  # per intermediate neuron, descending sort not assumed
    flops_per_neuron: float
    mean: torch.Tensor


def width_scores(
    model: nn.Module, sites: Sequence[FFNSite], stats: CalibrationStats, counts: FlopCount
) -> list[WidthScores]:
    """Neuron importance E[h_j^2] x ||W_out[:, j]||^2 (activation-weighted output energy)."""
    result = []
    for site in sites:
        hidden = stats.ffn_hidden[site.name]
        output = get_linear(model, site.output).weight.detach().double()
        importance = hidden.covariance.diagonal() * output.pow(2).sum(0)
        per_neuron = (
            sum(2.0 * counts.tokens.get(path, 0) * get_linear(model, path).in_features for path in site.inputs)
            + 2.0 * counts.tokens.get(site.output, 0) * output.shape[0]
        )
        result.append(WidthScores(site, importance, per_neuron, hidden.mean))
    return result


def width_plan(scores: Sequence[WidthScores], epsilon: float) -> FFNPlan:
    """Keep, per FFN, the fewest neurons whose share of importance lost is <= epsilon."""
    plan = FFNPlan(epsilon)
    for entry in scores:
        losses = truncation_ks(entry.importance)
        width = int((losses > epsilon).sum()) + 1
        full = entry.importance.numel()
        plan.widths[entry.site.name] = None if width >= full else width
        plan.flops += entry.flops_per_neuron * width
    return plan


def bisect_epsilon(plan_at, target_flops: float, dense_flops: float, iterations: int = 40) -> FFNPlan:
    """The smallest epsilon whose plan's FLOPs are <= target (plans shrink as epsilon grows)."""
    if target_flops >= dense_flops:
        return plan_at(0.0)
    smallest = plan_at(1.0 - 1e-9)
    if smallest.flops > target_flops:
        raise BudgetError(
            f"FFN compression alone cannot reach the budget: the FFNs in scope need at least "
            f"{smallest.flops / 1e9:.3f} GFLOPs but only {target_flops / 1e9:.3f} GFLOPs are left for them"
        )
    low, high = 0.0, 1.0 - 1e-9
    best = smallest
    for _ in range(iterations):
        middle = (low + high) / 2
        plan = plan_at(middle)
        if plan.flops <= target_flops:
            best, high = plan, middle
        else:
            low = middle
    return best


def apply_plan(
    model: nn.Module,
    plan: FFNPlan,
    factors: Sequence[LinearFactors] = (),
    widths: Sequence[WidthScores] = (),
) -> None:
    for entry in factors:
        rank = plan.ranks.get(entry.path)
        if rank is not None:
            down, up = entry.factors(rank)
            factorise_linear(model, entry.path, down.float(), up.float())
    for scored in widths:
        width = plan.widths.get(scored.site.name)
        if width is not None:
            kept = scored.importance.argsort(descending=True)[:width].tolist()
            prune_ffn_width(model, scored.site, kept, scored.mean.float())


def dense_ffn_flops(sites: Sequence[FFNSite], counts: FlopCount) -> float:
    return sum(counts.modules.get(path, 0.0) for site in sites for path in (*site.inputs, site.output))
