"""Low-rank FFN operators: each FFN linear W (out x in) becomes up(down(x)) with rank r.

Whitened (SVD-LLM's truncation-aware whitening): with S the Cholesky factor of G + lam I, G the second
moment of the linear's inputs on the calibration tokens, W S = U diag(s) V^T and W ~ U_r diag(s_r)
V_r^T S^-1. The discarded s_i^2 are then exactly the output error on those inputs (plus the ridge term),
so this rank-r map is the least-squares optimum there. Because the walk gathers G on the inputs the
already-compressed blocks produce, and the down projection's G after its own FFN's gate/up were
factorised, this is also SVD-LLM's layer-wise update: the optimum on the compressed stream.
Plain SVD (no whitening) and uniform rank (the same share of every matrix's rank) are baselines.

Ranks follow one knob per FFN, the share of each matrix's (whitened) energy its truncation may lose;
a matrix stays dense where the rank would not save compute (r >= in * out / (in + out)).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from infoprune_core.adapters.base import FFNSite
from infoprune_core.calibration.block import BlockStatistics
from infoprune_core.calibration.moments import InputMoments
from infoprune_core.plan.flops import FFNCost
from infoprune_core.plan.types import LowRankShape, PathPoint
from infoprune_core.reconstruction import DTYPE, damping
from infoprune_core.surgery import factorise_linear, get_linear

STEPS = 24  # ranks tried per matrix between its break-even and a sixteenth of it


@dataclass
class Factors:
    """W S = U diag(s) Vh (S: the whitening factor, or None for plain SVD)."""

    u: torch.Tensor
    s: torch.Tensor
    vh: torch.Tensor
    whitening: torch.Tensor | None

    @property
    def shape(self) -> tuple[int, int]:
        return self.u.shape[0], self.vh.shape[1]

    @property
    def break_even(self) -> int:
        """Largest rank that still saves compute: r < in*out/(in+out)."""
        out_features, in_features = self.shape
        return max(int((in_features * out_features - 1) // (in_features + out_features)), 0)

    def energy_loss(self) -> torch.Tensor:
        """Share of the (whitened) energy lost by keeping r = 1..d singular values."""
        energy = self.s.pow(2)
        return 1 - energy.cumsum(0) / energy.sum().clamp_min(1e-30)

    def rank(self, level: float, uniform: bool) -> int | None:
        """The rank for a level (None: stay dense, the rank would not save compute)."""
        full = self.s.numel()
        rank = max(round((1 - level) * full), 1) if uniform else int((self.energy_loss() > level).sum()) + 1
        return rank if rank <= self.break_even else None

    def factors(self, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(down [r, in], up [out, r]) with W ~ up @ down; singular values split evenly."""
        root = self.s[:rank].sqrt()
        down = root[:, None] * self.vh[:rank]
        if self.whitening is not None:
            # down @ S^-1, computed as a triangular solve: X S = down  <=>  S^T X^T = down^T
            down = torch.linalg.solve_triangular(self.whitening.T, down.T, upper=True).T
        return down, self.u[:, :rank] * root[None, :]


def factorise(weight: torch.Tensor, gram: torch.Tensor | None, ridge: float) -> Factors:
    """SVD of W, whitened by the ridged input second moment `gram` ([in, in]) when given."""
    w = weight.to(DTYPE)
    whitening = None
    if gram is not None:
        features = gram.shape[0]
        gram = gram.to(DTYPE)
        lam = damping(gram, ridge, features)
        whitening = torch.linalg.cholesky(gram + lam * torch.eye(features, dtype=DTYPE, device=gram.device))
        w = w @ whitening.to(w.device)
    u, s, vh = torch.linalg.svd(w, full_matrices=False)
    return Factors(u, s, vh, None if whitening is None else whitening.to(u.device))


def ffn_path(factorised: Sequence[tuple[str, Factors]], cost: FFNCost, uniform: bool) -> list[PathPoint]:
    """The FFN's low-rank path over LEVELS: FLOPs removed and an error estimate in output units.

    The output projection's discarded energy is its output error; the input projections' share of
    lost energy is taken as the same share of the FFN's output energy (they act before the activation).
    """
    *inputs, (_, output) = factorised
    width = output.shape[1]
    full = cost.flops(width)
    output_energy = float(output.s.pow(2).sum())
    points: list[PathPoint] = []
    for level in _levels([factors for _, factors in factorised], uniform):
        flops, error = 0.0, 0.0
        ranks = []
        for index, (path, factors) in enumerate(factorised):
            rank = factors.rank(level, uniform)
            flops += cost.linear_flops(*factors.shape, rank)
            if rank is not None:
                ranks.append((path, rank))
                share = 1 if index == len(inputs) else len(inputs)
                error += float(factors.energy_loss()[rank - 1]) * output_energy / share
        if not points or full - flops > points[-1].flops_removed:
            points.append(PathPoint(full - flops, error, LowRankShape(level, tuple(ranks))))
    return points


def _weight(model: nn.Module, path: str) -> torch.Tensor:
    return get_linear(model, path).weight.detach()


def _levels(factorised: Sequence[Factors], uniform: bool) -> list[float]:
    """Knob values at which some matrix reaches one of STEPS ranks below its break-even."""
    levels = {0.0}
    for factors in factorised:
        full, top = factors.s.numel(), factors.break_even
        losses = factors.energy_loss()
        for step in range(STEPS):
            rank = max(round(top * (1 - step / STEPS * (1 - 1 / 16))), 1)
            levels.add(1 - rank / full + 1e-9 if uniform else float(losses[rank - 1]))
    return sorted(levels)


def low_rank_path(
    model: nn.Module,
    site: FFNSite,
    stats: BlockStatistics,
    cost: FFNCost,
    ridge: float,
    operator: str,
) -> list[PathPoint]:
    """The FFN's low-rank path under `operator` (errors in the units of its hidden Gram matrix)."""
    assert stats.ffn_inputs is not None and stats.channels is not None
    whitened = operator == "whitened_svd"
    factorised = [
        (path, factorise(_weight(model, path), _gram(moments) if whitened else None, ridge))
        for path, moments in [*((p, stats.ffn_inputs) for p in site.inputs), (site.output, stats.channels)]
    ]
    return ffn_path(factorised, cost, uniform=operator == "uniform")


def _gram(moments: InputMoments) -> torch.Tensor:
    return moments.gram[: moments.features, : moments.features]


def factorise_at(
    model: nn.Module, paths: Sequence[str], moments: InputMoments, shape: LowRankShape, ridge: float, operator: str
) -> dict[str, int]:
    """Replace each linear at `paths` that `shape` factorises by its best factorisation of that rank on
    these inputs; returns the ranks applied."""
    planned = dict(shape.ranks)
    applied = {}
    for path in paths:
        if path not in planned:
            continue
        factors = factorise(_weight(model, path), _gram(moments) if operator == "whitened_svd" else None, ridge)
        down, up = factors.factors(planned[path])
        factorise_linear(model, path, down.float(), up.float())
        applied[path] = planned[path]
    return applied
