"""FFN width pruning: remove channels (rows of the input linears, columns of the output linear).

Channels go in chunks (a power of two, so widths stay friendly to matrix kernels). Which chunk goes
next is decided by the re-fit error each channel would add (the OBS cost on the Gram matrix of the
FFN's hidden activations), or for a static criterion by the lowest scores; either way the error of
the cut is measured by the same re-fit.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from infoprune_core.adapters.base import FFNSite
from infoprune_core.calibration.block import BlockStatistics
from infoprune_core.calibration.moments import InputMoments
from infoprune_core.plan.flops import FFNCost
from infoprune_core.plan.types import PathPoint
from infoprune_core.reconstruction import RemovalPath, kept_columns, ridge_refit
from infoprune_core.surgery import augmented_weight, prune_ffn_width, write_augmented

MAX_CHUNK = 32
LEVELS = 48  # a path has about this many points
MIN_WIDTH_FRACTION = 1 / 16  # an FFN keeps at least this share of its channels


def chunk_size(width: int) -> int:
    """Channels removed per step: the largest power of two <= width / LEVELS, at most MAX_CHUNK."""
    size = 1
    while size * 2 <= min(MAX_CHUNK, width / LEVELS):
        size *= 2
    return size


def min_width(width: int) -> int:
    return max(1, int(width * MIN_WIDTH_FRACTION))


def activation_scores(moments: InputMoments, weight: torch.Tensor) -> torch.Tensor:
    """E[h_j^2] x ||W_out[:, j]||^2 per channel: its share of the output energy, ignoring re-fits."""
    features = moments.features
    return moments.gram.diagonal()[:features] * weight[:, :features].double().pow(2).sum(0).to(moments.gram.device)


class ChannelRemoval:
    """Kept channels of one FFN and the re-fit state as channels are removed."""

    def __init__(self, width: int, path: RemovalPath, cost: FFNCost, scores: torch.Tensor | None) -> None:
        self.width = width
        self.path = path
        self.cost = cost
        self.scores = scores
        self.alive = torch.ones(width, dtype=torch.bool)
        self.chunk = chunk_size(width)

    @property
    def kept(self) -> list[int]:
        return self.alive.nonzero().squeeze(1).tolist()

    def _step(self, count: int) -> None:
        if self.scores is not None:
            costs = torch.where(self.alive, self.scores.double(), torch.full((self.width,), float("inf")))
        else:
            costs = self.path.column_costs()[: self.width].cpu()
        chosen = costs.topk(count, largest=False).indices
        self.path.remove(chosen.to(self.path.hinv.device))
        self.alive[chosen] = False

    def path_points(self) -> list[PathPoint]:
        """Remove chunks down to the minimum width; FLOPs removed, cumulative error and width per step."""
        full = self.cost.flops(self.width)
        points = [PathPoint(0.0, 0.0, self.width)]
        floor = min_width(self.width)
        while (remaining := int(self.alive.sum())) > floor:
            self._step(min(self.chunk, remaining - floor))
            kept = int(self.alive.sum())
            points.append(PathPoint(full - self.cost.flops(kept), self.path.error, kept))
        return points

    def reach(self, width: int) -> list[int]:
        """Remove chunks until `width` channels remain; returns the kept channels."""
        while (remaining := int(self.alive.sum())) > width:
            self._step(min(self.chunk, remaining - width))
        return self.kept


def channel_removal(
    model: nn.Module,
    site: FFNSite,
    moments: InputMoments,
    cost: FFNCost,
    ridge: float,
    scores: torch.Tensor | None = None,
) -> ChannelRemoval:
    path = RemovalPath(augmented_weight(model, site.output), moments.gram, ridge, protected=int(moments.bias))
    return ChannelRemoval(moments.features, path, cost, scores)


def width_path(model: nn.Module, site: FFNSite, moments: InputMoments, cost: FFNCost, ridge: float) -> list[PathPoint]:
    """The FFN's channel-removal path by re-fit error (errors in the units of the Gram matrix)."""
    return channel_removal(model, site, moments, cost, ridge).path_points()


def cut_width(
    model: nn.Module,
    site: FFNSite,
    width: int,
    stats: BlockStatistics,
    cost: FFNCost,
    ridge: float,
    reconstruct: bool,
) -> dict[str, Any]:
    """Keep `width` channels and re-fit the output projection (or, without a re-fit, keep the channels
    with the most output energy and fold the mean of the others into the bias)."""
    moments = stats.channels
    assert moments is not None
    original = augmented_weight(model, site.output)
    # Without a re-fit the OBS cost does not apply; channels go by activation-weighted output energy.
    scores = None if reconstruct else activation_scores(moments, original)
    removal = channel_removal(model, site, moments, cost, ridge, scores)
    kept = removal.reach(width)
    prune_ffn_width(model, site, kept, moments.mean.float() if moments.bias and not reconstruct else None)
    if reconstruct:
        columns = kept_columns(torch.tensor(kept), moments.features, moments.bias)
        refit = ridge_refit(original, moments.gram, columns, ridge, moments.features, cross=moments.cross)
        write_augmented(model, site.output, refit)
    return {"width": len(kept), "refit_error": removal.path.error / max(stats.energy, 1e-30)}
