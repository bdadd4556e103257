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


def test_uniform_plan_is_the_best_common_layout_within_the_free_plans_attention_share() -> None:
    """Every block gets the same layout; of the common layouts that remove enough and take no more of the
    attention than the free plan at that budget does, the least total error; without such a layout, any."""
    from infoprune_core.plan.budget import BlockPaths, Budget, plan_for_budget, plan_uniform
    from infoprune_core.plan.types import AttentionShape

    def block(head_errors: list[float], width_errors: list[float]) -> BlockPaths:
        shapes = tuple(PathPoint(2.0 * i, e, AttentionShape(1, 3 - i)) for i, e in enumerate(head_errors))
        widths = [PathPoint(1.0 * i, e, 8 - i) for i, e in enumerate(width_errors)]
        return BlockPaths(list(shapes), widths, attention_flops=6.0, ffn_flops=8.0, attention_shapes=shapes)

    def brute_force(paths: dict[str, BlockPaths], removal: float, cap: float) -> float:
        return min(
            sum(p.attention_shapes[h].error + p.ffn[w].error for p in paths.values())
            for h in range(3)
            for w in range(4)
            if sum(p.attention_shapes[h].flops_removed + p.ffn[w].flops_removed for p in paths.values()) >= removal
            and sum(p.attention_shapes[h].flops_removed for p in paths.values()) <= cap
        )

    # Cheap heads in one block, cheap FFN channels in both: the free plan takes 2 attention FLOPs of 12,
    # which no common layout matches, so the uniform plan cuts only the FFNs.
    paths = {"s.0": block([0, 0.1, 5.0], [0, 0.2, 0.4, 3.0]), "s.1": block([0, 1.0, 9.0], [0, 0.1, 0.2, 0.3])}
    budget = Budget(scope_flops=40.0, target_flops_ratio=0.86)
    free = plan_for_budget(paths, budget)
    cap = sum(paths[n].attention_shapes[3 - b.attention.heads_per_group].flops_removed for n, b in free.blocks.items())
    plan = plan_uniform(paths, {"s": ["s.0", "s.1"]}, budget)
    chosen = {(b.attention, b.ffn_width) for b in plan.blocks.values()}
    assert len(chosen) == 1 and next(iter(chosen))[0] == AttentionShape(1, 3)
    assert plan.expected_error == pytest.approx(brute_force(paths, 5.6, cap))
    assert plan.flops_removed >= 5.6
    # 6.98 FLOPs to go: the free plan still takes 2 attention FLOPs, and the FFNs alone end at 6 (every
    # width stops at 5 of 8), so any layout may be used.
    deeper = plan_uniform(paths, {"s": ["s.0", "s.1"]}, Budget(scope_flops=40.0, target_flops_ratio=0.8255))
    assert next(iter(deeper.blocks.values())).attention != AttentionShape(1, 3)
    assert deeper.expected_error == pytest.approx(brute_force(paths, 6.98, float("inf")))
    assert deeper.flops_removed >= 6.98
