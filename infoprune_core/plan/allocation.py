"""Spreading a FLOP cut over blocks: least total re-fit error for the FLOPs that must go.

Every compressible half-block (an attention or an FFN) has a removal path: points of (FLOPs removed,
re-fit error) measured on calibration data, errors made comparable across blocks by the caller
(relative to the residual stream). The allocation walks the lower convex hull of every path and takes
the cheapest segments first (error per FLOP), as a Lagrangian relaxation would, until enough FLOPs
are gone; within the last segment it stops at the first path point that is enough. Steps taken
earlier that the last one made unnecessary are then given back, the costliest first, so the cut lands
as close to the budget as the paths' steps allow.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol


class Point(Protocol):
    """What the allocation reads of a path point."""

    @property
    def flops_removed(self) -> float: ...

    @property
    def error(self) -> float: ...


@dataclass(frozen=True)
class _Segment:
    curve: int
    start: int  # path index
    end: int
    slope: float


def lower_hull(points: Sequence[Point]) -> list[int]:
    """Indices of the lower convex hull of a path (FLOPs ascending), from its first to its last point."""
    hull: list[int] = []
    for index, point in enumerate(points):
        while len(hull) >= 2:
            a, b = points[hull[-2]], points[hull[-1]]
            cross = (b.flops_removed - a.flops_removed) * (point.error - a.error) - (b.error - a.error) * (
                point.flops_removed - a.flops_removed
            )
            if cross > 0:
                break
            hull.pop()
        hull.append(index)
    return hull


def allocate(paths: Sequence[Sequence[Point]], flops_to_remove: float) -> list[int]:
    """The chosen point index on every path: together at least `flops_to_remove`, at least error.

    Paths start with their zero point (nothing removed). Raises ValueError when even the ends of all
    paths do not remove enough.
    """
    choice = [0] * len(paths)
    if flops_to_remove <= 0:
        return choice
    if sum(path[-1].flops_removed for path in paths) < flops_to_remove:
        raise ValueError("the paths cannot remove that many FLOPs")
    segments = []
    for curve, path in enumerate(paths):
        hull = lower_hull(path)
        for start, end in itertools.pairwise(hull):
            gained = path[end].flops_removed - path[start].flops_removed
            segments.append(_Segment(curve, start, end, (path[end].error - path[start].error) / gained))
    segments.sort(key=lambda s: (s.slope, s.curve, s.start))
    removed = 0.0
    for segment in segments:
        path = paths[segment.curve]
        needed = flops_to_remove - removed
        base = path[segment.start].flops_removed
        if path[segment.end].flops_removed - base >= needed:
            stop = next(i for i in range(segment.start + 1, segment.end + 1) if path[i].flops_removed - base >= needed)
            choice[segment.curve] = stop
            return _give_back(paths, choice, flops_to_remove)
        choice[segment.curve] = segment.end
        removed += path[segment.end].flops_removed - base
    return choice


def _give_back(paths: Sequence[Sequence[Point]], choice: list[int], flops_to_remove: float) -> list[int]:
    """Step curves back one point at a time while enough FLOPs stay removed, costliest step first."""
    removed = sum(path[index].flops_removed for path, index in zip(paths, choice, strict=True))
    while True:
        best: tuple[float, int] | None = None
        for curve, (path, index) in enumerate(zip(paths, choice, strict=True)):
            if index == 0:
                continue
            gained = path[index].flops_removed - path[index - 1].flops_removed
            if removed - gained < flops_to_remove:
                continue
            saved = path[index].error - path[index - 1].error
            if best is None or saved > best[0]:
                best = (saved, curve)
        if best is None:
            return choice
        curve = best[1]
        removed -= paths[curve][choice[curve]].flops_removed - paths[curve][choice[curve] - 1].flops_removed
        choice[curve] -= 1


def within_error(path: Sequence[Point], bound: float) -> int:
    """The furthest point of a path whose error stays within `bound` (0 when even the first step exceeds it)."""
    return max(i for i, point in enumerate(path) if point.error <= bound or i == 0)
