"""From what the user asked (a FLOP ratio of the scope, or explicit knobs) to a plan for every block."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from infoprune_core.errors import BudgetError
from infoprune_core.plan.allocation import allocate, within_error
from infoprune_core.plan.types import (
    AttentionShape,
    BlockPlan,
    CompressionPlan,
    LowRankShape,
    PathPoint,
    UniformShape,
)


@dataclass(frozen=True)
class BlockPaths:
    """The measured removal paths of one block's two halves (None: that half is not compressed)."""

    attention: list[PathPoint] | None
    ffn: list[PathPoint] | None
    attention_flops: float = 0.0  # what the attention half costs in full
    ffn_flops: float = 0.0  # what the FFN half costs in full
    attention_shapes: tuple[PathPoint, ...] = ()  # every reachable head layout (for uniform plans)


@dataclass(frozen=True)
class Budget:
    """FLOPs the scope must lose, or the explicit knobs.

    A FLOP target is met in two counts: all FLOPs (attention products included), and those of the
    linears and convolutions alone (`scope_linear_flops`), which is what torch's own counter reports
    for a CPU model whose attention runs through scaled_dot_product_attention.
    """

    scope_flops: float
    target_flops_ratio: float | None = None
    head_keep_ratio: float | None = None  # fraction of the attention FLOPs in scope to keep
    ffn_epsilon: float | None = None  # relative re-fit error each FFN may reach
    scope_linear_flops: float | None = None  # the scope's FLOPs without attention products


def plan_for_budget(paths: Mapping[str, BlockPaths], budget: Budget) -> CompressionPlan:
    """Choose a point on every path so that the budget is met at the least total error."""
    curves: list[tuple[str, str, list[PathPoint]]] = []
    attention_total = sum(block.attention_flops for block in paths.values() if block.attention is not None)
    for name, block in paths.items():
        if block.attention is not None:
            curves.append((name, "attention", block.attention))
        if block.ffn is not None:
            curves.append((name, "ffn", block.ffn))
    choice = dict.fromkeys(range(len(curves)), 0)
    if budget.target_flops_ratio is not None:
        compressible = sum(
            block.attention_flops * (block.attention is not None) + block.ffn_flops * (block.ffn is not None)
            for block in paths.values()
        )
        choice = dict(enumerate(_allocate_target(curves, budget, budget.scope_flops - compressible)))
    else:
        if budget.head_keep_ratio is not None:
            attention = [i for i, (_, half, _) in enumerate(curves) if half == "attention"]
            removal = (1 - budget.head_keep_ratio) * attention_total
            picked = _allocate([curves[i] for i in attention], removal, budget, budget.scope_flops - attention_total)
            choice.update(zip(attention, picked, strict=True))
        if budget.ffn_epsilon is not None:
            for i, (_, half, path) in enumerate(curves):
                if half == "ffn":
                    choice[i] = within_error(path, budget.ffn_epsilon)
    plan = CompressionPlan()
    for index, (name, _, path) in enumerate(curves):
        point = path[choice[index]]
        current = plan.blocks.get(name, BlockPlan(name))
        if isinstance(point.shape, AttentionShape):
            current = replace(current, attention=point.shape)
        elif isinstance(point.shape, LowRankShape):
            current = replace(current, ffn_low_rank=point.shape)
        elif isinstance(point.shape, int):
            current = replace(current, ffn_width=point.shape)
        plan.blocks[name] = current
        plan.flops_removed += point.flops_removed
        plan.core_removed += point.core_removed
        plan.expected_error += point.error
    return plan


LINEAR_SLACK = 0.002  # how far above the target the linears-only ratio may land


def _allocate_target(curves: list[tuple[str, str, list[PathPoint]]], budget: Budget, fixed: float) -> list[int]:
    """Allocate the target's FLOPs; while the linears-only ratio stays above the target, ask for more (as
    far as the blocks go: a model that spends most of its FLOPs in attention products may not get there)."""
    assert budget.target_flops_ratio is not None
    target = budget.target_flops_ratio
    most = sum(path[-1].flops_removed for _, _, path in curves)
    removal = (1 - target) * budget.scope_flops
    choice = _allocate(curves, removal, budget, fixed)
    while budget.scope_linear_flops is not None and removal < most:
        points = [path[i] for (_, _, path), i in zip(curves, choice, strict=True)]
        linear = sum(p.flops_removed - p.core_removed for p in points)
        excess = (1 - linear / budget.scope_linear_flops) - target
        if excess <= LINEAR_SLACK:
            break
        removal = min(most, removal + excess * budget.scope_linear_flops)
        choice = _allocate(curves, removal, budget, fixed)
    return choice


def _allocate(curves: list[tuple[str, str, list[PathPoint]]], flops: float, budget: Budget, fixed: float) -> list[int]:
    try:
        return allocate([path for _, _, path in curves], flops)
    except ValueError:
        reachable = 1 - sum(path[-1].flops_removed for _, _, path in curves) / budget.scope_flops
        raise BudgetError(
            f"the budget cannot be met: parts that are not compressed already cost {fixed / budget.scope_flops:.3f} "
            "of the scope's FLOPs and every block keeps one query head per KV group it keeps and some FFN "
            f"channels, so the closest reachable is {reachable:.3f}"
        ) from None


def plan_uniform(
    paths: Mapping[str, BlockPaths], stacks: Mapping[str, Sequence[str]], budget: Budget
) -> CompressionPlan:
    """One head layout and one FFN width per stack, the same in each of its blocks, at the least total error.

    A stack gives up no larger a share of its attention FLOPs than the free plan at the same budget
    does (where the target cannot be met so, any share). Summed over a stack, per-block errors
    undercount how attention cuts compound: on SmolLM2-135M at 0.8x the unconstrained choice kept one
    query head per layer (perplexity 6.4x the original's), the FFN alone at the same FLOPs 1.5x. The free
    plan's split between attention and FFN comes from comparing cuts within each block, where the errors
    are comparable. Only a FLOP target is supported (explicit knobs describe per-block cuts).
    """
    if budget.target_flops_ratio is None:
        raise BudgetError("a uniform shape needs target_flops_ratio (head_keep_ratio and ffn_epsilon are per block)")
    free = plan_for_budget(paths, budget)
    caps = [sum(_attention_removed(free, name, paths[name]) for name in blocks) for blocks in stacks.values()]
    compressible = sum(
        b.attention_flops * (b.attention is not None) + b.ffn_flops * (b.ffn is not None) for b in paths.values()
    )
    options, choice = _uniform_choice(paths, stacks, budget, budget.scope_flops - compressible, caps)
    plan = CompressionPlan()
    for blocks, path, index in zip(stacks.values(), options, choice, strict=True):
        point = path[index]
        assert isinstance(point.shape, UniformShape)
        for name in blocks:
            plan.blocks[name] = BlockPlan(name, point.shape.attention, point.shape.ffn_width)
        plan.flops_removed += point.flops_removed
        plan.core_removed += point.core_removed
        plan.expected_error += point.error
    return plan


def _attention_removed(plan: CompressionPlan, name: str, block: BlockPaths) -> float:
    """The attention FLOPs a plan removes from a block (0 where its attention is not cut)."""
    planned = plan.blocks.get(name)
    if planned is None or planned.attention is None:
        return 0.0
    return next(p.flops_removed for p in block.attention_shapes if p.shape == planned.attention)


def _layout_removal(blocks: Sequence[BlockPaths], layout: object) -> float:
    """The attention FLOPs one head layout removes from all the blocks."""
    return sum(next(p.flops_removed for p in block.attention_shapes if p.shape == layout) for block in blocks)


def _uniform_choice(
    paths: Mapping[str, BlockPaths],
    stacks: Mapping[str, Sequence[str]],
    budget: Budget,
    fixed: float,
    caps: Sequence[float],
) -> tuple[list[list[PathPoint]], list[int]]:
    """Each stack's uniform options and the allocation over them: within the attention caps if the
    target can be met so, else without them."""
    for capped in (True, False):
        options = [
            _uniform_options([paths[name] for name in blocks], cap if capped else None)
            for blocks, cap in zip(stacks.values(), caps, strict=True)
        ]
        curves = [(stack, "uniform", path) for stack, path in zip(stacks, options, strict=True)]
        try:
            return options, _allocate_target(curves, budget, fixed)
        except BudgetError:
            if not capped:
                raise
    raise AssertionError("unreachable")


def _uniform_options(blocks: Sequence[BlockPaths], attention_cap: float | None = None) -> list[PathPoint]:
    """Every (head layout, FFN width) all the blocks can take, summed over them, the layouts removing at
    most `attention_cap` attention FLOPs in all (None: any); dominated ones dropped."""
    attention: list[PathPoint | None] = [None]
    if all(block.attention is not None for block in blocks):
        common = set.intersection(*({p.shape for p in block.attention_shapes} for block in blocks))
        attention = [
            p
            for p in blocks[0].attention_shapes
            if p.shape in common
            and (attention_cap is None or _layout_removal(blocks, p.shape) <= attention_cap * (1 + 1e-9))
        ]
    widths: list[PathPoint | None] = [None]
    if all(block.ffn is not None for block in blocks):
        common_widths = set.intersection(*({p.shape for p in block.ffn or ()} for block in blocks))
        widths = [p for p in blocks[0].ffn or () if p.shape in common_widths]
    points = []
    for head in attention:
        for width in widths:
            flops = error = core = 0.0
            for block in blocks:
                if head is not None:
                    own = next(p for p in block.attention_shapes if p.shape == head.shape)
                    flops, error, core = flops + own.flops_removed, error + own.error, core + own.core_removed
                if width is not None:
                    own = next(p for p in block.ffn or () if p.shape == width.shape)
                    flops, error = flops + own.flops_removed, error + own.error
            shape = UniformShape(
                None if head is None else head.shape,  # type: ignore[arg-type]
                None if width is None else width.shape,  # type: ignore[arg-type]
            )
            points.append(PathPoint(flops, error, shape, core))
    # Keep the points no other beats (as many FLOPs removed or more at no more error), FLOPs ascending.
    points.sort(key=lambda p: (-p.flops_removed, p.error))
    frontier: list[PathPoint] = []
    for point in points:
        if not frontier or point.error < frontier[-1].error:
            frontier.append(point)
    return frontier[::-1]
