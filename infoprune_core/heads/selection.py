"""Removing heads from one attention block, GQA-safe, while tracking the re-fit error.

With grouped-query attention a cut either removes a whole KV group (its query heads and its k/v
heads) or the same number of query heads from every group, so the layout stays expressible. Which
unit goes next is decided by the re-fit error it would add (the OBS cost on the block's Gram matrix of
head outputs) or, for a static criterion, by the lowest scores; either way the error of the cut is
measured by the same re-fit.
"""

from __future__ import annotations

import torch

from infoprune_core.adapters.base import AttentionSite
from infoprune_core.plan.flops import AttentionCost
from infoprune_core.plan.types import AttentionShape, PathPoint
from infoprune_core.reconstruction import RemovalPath


def head_columns(heads: list[int], head_dim: int) -> torch.Tensor:
    """Input columns of the output projection that carry the given heads."""
    return torch.cat([torch.arange(h * head_dim, (h + 1) * head_dim) for h in heads])


class HeadRemoval:
    """Kept heads of one block by KV group, and the re-fit state as heads are removed.

    `scores` (higher = keep) make the order static; without them each step removes the unit whose
    re-fit error, per FLOP saved, is smallest.
    """

    def __init__(self, site: AttentionSite, path: RemovalPath, cost: AttentionCost, scores: torch.Tensor | None):
        self.site = site
        self.path = path
        self.cost = cost
        self.scores = scores
        self.groups = {g: list(range(g * site.group_size, (g + 1) * site.group_size)) for g in range(site.num_kv_heads)}

    @property
    def shape(self) -> AttentionShape:
        return AttentionShape(len(self.groups), len(next(iter(self.groups.values()))))

    @property
    def kept(self) -> list[int]:
        return sorted(h for heads in self.groups.values() for h in heads)

    def flops(self) -> float:
        shape = self.shape
        return self.cost.flops(shape.query_heads, shape.kv_groups)

    def _cost(self, heads: list[int]) -> float:
        if self.scores is not None:
            return float(self.scores[heads].mean())
        return self.path.cost(head_columns(heads, self.site.head_dim))

    def _weakest_per_group(self) -> list[int]:
        return [min(heads, key=lambda h: self._cost([h])) for heads in self.groups.values()]

    def candidates(self, target: AttentionShape | None = None) -> list[list[int]]:
        """Units that may go next without passing `target` (or the floor of one head in one group)."""
        shape = self.shape
        floor = target or AttentionShape(1, 1)
        units: list[list[int]] = []
        if shape.kv_groups > floor.kv_groups:
            units.extend(list(heads) for heads in self.groups.values())
        if shape.heads_per_group > floor.heads_per_group:
            units.append(self._weakest_per_group())
        return units

    def remove(self, heads: list[int]) -> float:
        added = self.path.remove(head_columns(heads, self.site.head_dim))
        for group in list(self.groups):
            self.groups[group] = [h for h in self.groups[group] if h not in heads]
            if not self.groups[group]:
                del self.groups[group]
        return added

    def _next(self, target: AttentionShape | None) -> list[int] | None:
        units = self.candidates(target)
        if not units:
            return None
        before = self.flops()

        def price(heads: list[int]) -> float:
            if self.scores is not None:
                return self._cost(heads)
            saved = before - self._flops_without(heads)
            return self._cost(heads) / max(saved, 1e-9)

        return min(units, key=price)

    def _flops_without(self, heads: list[int]) -> float:
        query = self.shape.query_heads - len(heads)
        groups = sum(1 for members in self.groups.values() if any(h not in heads for h in members))
        return self.cost.flops(query, groups)

    def point(self, start: float, start_core: float) -> PathPoint:
        """Where the removal stands: FLOPs removed since `start`, error, shape."""
        core = start_core - self.cost.core(self.shape.query_heads)
        return PathPoint(start - self.flops(), self.path.error, self.shape, core)

    def path_points(self) -> list[PathPoint]:
        """Remove units down to the floor; every point's FLOPs removed, cumulative error and shape."""
        start, start_core = self.flops(), self.cost.core(self.shape.query_heads)
        points = [self.point(start, start_core)]
        while (unit := self._next(None)) is not None:
            self.remove(unit)
            points.append(self.point(start, start_core))
        return points

    def reach(self, target: AttentionShape) -> list[int]:
        """Remove units until the layout is `target`; returns the kept heads."""
        while (unit := self._next(target)) is not None:
            self.remove(unit)
        if self.shape != target:
            raise ValueError(f"{self.site.name}: cannot reach {target} from {self.shape}")
        return self.kept
