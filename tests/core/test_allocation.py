"""Spreading the cut over blocks: least total error for the FLOPs that must go, landing close to them."""

from __future__ import annotations

import itertools

import pytest

from infoprune_core.plan.allocation import allocate, lower_hull, within_error
from infoprune_core.plan.types import PathPoint


def _path(errors: list[float], step: float = 1.0) -> list[PathPoint]:
    return [PathPoint(i * step, e, i) for i, e in enumerate(errors)]


def _brute_force(paths: list[list[PathPoint]], needed: float) -> float:
    best = float("inf")
    for choice in itertools.product(*(range(len(p)) for p in paths)):
        removed = sum(p[i].flops_removed for p, i in zip(paths, choice, strict=True))
        if removed >= needed:
            best = min(best, sum(p[i].error for p, i in zip(paths, choice, strict=True)))
    return best


def test_cheap_blocks_give_first() -> None:
    cheap, dear = _path([0, 0.1, 0.2, 0.3]), _path([0, 1.0, 2.0, 3.0])
    assert allocate([cheap, dear], 3.0) == [3, 0]
    assert allocate([cheap, dear], 4.0) == [3, 1]
    assert allocate([cheap, dear], 0.0) == [0, 0]


@pytest.mark.parametrize("needed", [1.0, 2.5, 4.0, 6.0])
def test_convex_paths_get_the_optimum(needed: float) -> None:
    paths = [_path([0, 0.2, 0.6, 1.5]), _path([0, 0.1, 0.5, 0.9]), _path([0, 0.4, 0.8, 1.2], step=1.5)]
    choice = allocate(paths, needed)
    removed = sum(p[i].flops_removed for p, i in zip(paths, choice, strict=True))
    total = sum(p[i].error for p, i in zip(paths, choice, strict=True))
    assert removed >= needed
    assert total == pytest.approx(_brute_force(paths, needed))


def test_a_big_last_step_gives_back_the_small_ones_it_made_unneeded() -> None:
    small = _path([0, 0.01, 0.02, 0.03, 0.04], step=0.25)  # four cheap quarter steps
    big = [PathPoint(0, 0, 0), PathPoint(2.0, 0.05, 1)]  # one step of 2 FLOPs
    choice = allocate([small, big], 2.0)
    removed = small[choice[0]].flops_removed + big[choice[1]].flops_removed
    assert choice[1] == 1 and removed == pytest.approx(2.0), "the small steps are given back"


def test_hull_skips_points_above_it() -> None:
    path = _path([0, 0.5, 0.6, 3.0])
    assert lower_hull(path) == [0, 2, 3]


def test_unreachable_and_error_bound() -> None:
    with pytest.raises(ValueError):
        allocate([_path([0, 1])], 5.0)
    path = _path([0, 0.01, 0.05, 0.2])
    assert within_error(path, 0.06) == 2
    assert within_error(path, 0.0) == 0
