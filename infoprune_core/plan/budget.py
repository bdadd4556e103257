"""From what the user asked (a FLOP ratio of the scope, or explicit knobs) to a plan for every block."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

from infoprune_core.errors import BudgetError
from infoprune_core.plan.allocation import allocate, within_error
from infoprune_core.plan.types import AttentionShape, BlockPlan, CompressionPlan, LowRankShape, PathPoint


@dataclass(frozen=True)
class BlockPaths:
    """The measured removal paths of one block's two halves (None: that half is not compressed)."""

    attention: list[PathPoint] | None
    ffn: list[PathPoint] | None
    attention_flops: float = 0.0  # what the attention half costs in full
    ffn_flops: float = 0.0  # what the FFN half costs in full


@dataclass(frozen=True)
class Budget:
    """FLOPs the scope must lose, or the explicit knobs."""

    scope_flops: float
    target_flops_ratio: float | None = None
    head_keep_ratio: float | None = None  # fraction of the attention FLOPs in scope to keep
    ffn_epsilon: float | None = None  # relative re-fit error each FFN may reach


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
        removal = (1 - budget.target_flops_ratio) * budget.scope_flops
        choice = dict(enumerate(_allocate(curves, removal, budget, budget.scope_flops - compressible)))
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
        else:
            current = replace(current, ffn_width=point.shape)
        plan.blocks[name] = current
        plan.flops_removed += point.flops_removed
        plan.expected_error += point.error
    return plan


def _allocate(curves: list[tuple[str, str, list[PathPoint]]], flops: float, budget: Budget, fixed: float) -> list[int]:
    try:
        return allocate([path for _, _, path in curves], flops)
    except ValueError:
        reachable = sum(path[-1].flops_removed for _, _, path in curves) / budget.scope_flops
        raise BudgetError(
            f"the budget cannot be met: parts that are not compressed already cost {fixed / budget.scope_flops:.3f} "
            f"of the scope's FLOPs and the blocks can lose at most {reachable:.3f} (every block keeps one query "
            f"head per KV group it keeps and some FFN channels), so the closest reachable is {1 - reachable:.3f}"
        ) from None
