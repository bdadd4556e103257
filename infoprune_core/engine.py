"""The sequential engine: measure every block, spread the budget, then compress block by block.

1. Paths. The original model is walked block by block; at each block one pass over the calibration
   activations gathers the Gram matrices of the inputs of the attention output projection (the
   concatenated head outputs) and of the FFN's projections, and the removal paths of both halves are
   measured: how the re-fit error grows as heads and channels (or rank) go. Errors are relative to
   the residual stream entering the block, so they compare across blocks.
2. Plan (`plan.budget`). The budget is spread over blocks and between attention and FFN at the least
   total error.
3. Walk. The model is walked again; at each block, on the activations the already-compressed blocks
   produce, the heads and channels to remove are chosen within the planned shape, removed, and the
   output projections re-fitted by ridge least squares toward the original block's outputs.

Statistics exist for one block at a time; calibration activations are held once, on the CPU.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from infoprune_core.adapters.base import Block, Stack
from infoprune_core.calibration.block import Wanted, collect
from infoprune_core.calibration.walk import BlockBatch, advance, capture_inputs
from infoprune_core.ffn.lowrank import factorise_at, low_rank_path
from infoprune_core.ffn.width import cut_width, width_path
from infoprune_core.heads.base import HeadImportance
from infoprune_core.heads.cut import attention_path, attention_shape_points, cut_heads
from infoprune_core.plan.budget import BlockPaths
from infoprune_core.plan.flops import AttentionCost, FFNCost, FlopCount
from infoprune_core.plan.types import AttentionShape, BlockPlan, CompressionPlan, PathPoint
from infoprune_core.surgery import get_linear

Batch = Mapping[str, torch.Tensor]
Tick = Callable[[int, int], None]


@dataclass(frozen=True)
class EngineSettings:
    ridge: float  # ridge strength of the re-fits, relative to the mean input energy
    reconstruct: bool  # re-fit the output projections after each cut
    relative_tokens: bool  # weight tokens by 1 / their residual-stream energy
    storage_dtype: torch.dtype  # of the calibration activations held between blocks
    attention: bool  # compress attention halves
    ffn_operator: str | None  # "width", a low-rank operator, or None to leave FFNs alone
    original_targets: bool = False  # re-fit toward the original model's activations, not the compressed ones
    uniform: bool = False  # measure every head layout of every block (for a uniform plan)
    compute_device: str | None = None  # blocks visit it one at a time (the weights live on the CPU)

    @property
    def low_rank(self) -> bool:
        return self.ffn_operator not in (None, "width")


@dataclass(frozen=True)
class Costs:
    """FLOP arithmetic of every block in scope, on the stated input."""

    attention: dict[str, AttentionCost]
    ffn: dict[str, FFNCost]

    @classmethod
    def of(cls, model: nn.Module, stacks: Sequence[Stack], counts: FlopCount) -> Costs:
        attention, ffn = {}, {}
        for block in iter_blocks(stacks):
            if block.attention is not None:
                hidden = get_linear(model, block.attention.o).out_features
                attention[block.name] = AttentionCost.of(block.attention, counts, hidden)
            if block.ffn is not None:
                hidden = get_linear(model, block.ffn.output).out_features
                ffn[block.name] = FFNCost.of(block.ffn, counts, hidden)
        return cls(attention, ffn)


def iter_blocks(stacks: Sequence[Stack]) -> Iterator[Block]:
    for stack in stacks:
        yield from stack.blocks


def stack_inputs(
    model: nn.Module, stack: Stack, batches: Sequence[Batch], settings: EngineSettings
) -> list[BlockBatch]:
    blocks = [(block.name, model.get_submodule(block.name)) for block in stack.blocks]
    return capture_inputs(model, blocks, batches, settings.storage_dtype, masked=stack.masked)


@contextmanager
def visiting(module: nn.Module, device: str | None) -> Iterator[nn.Module]:
    """The block on the compute device while inside, back on the CPU after (no-op without a device)."""
    if device is None:
        yield module
        return
    module.to(device)
    try:
        yield module
    finally:
        module.to("cpu")


def _relative(points: list[PathPoint], energy: float) -> list[PathPoint]:
    scale = 1.0 / max(energy, 1e-30)
    return [PathPoint(p.flops_removed, p.error * scale, p.shape, p.core_removed) for p in points]


def measure_paths(
    model: nn.Module,
    stacks: Sequence[Stack],
    batches: Sequence[Batch],
    costs: Costs,
    settings: EngineSettings,
    tick: Tick,
) -> dict[str, BlockPaths]:
    """Walk the original model and measure every block's removal paths (step 1)."""
    ffn = settings.ffn_operator is not None
    wanted = Wanted(heads=settings.attention, channels=ffn, ffn_inputs=ffn and settings.low_rank)
    paths: dict[str, BlockPaths] = {}
    total = sum(len(stack.blocks) for stack in stacks)
    for stack in stacks:
        stream = stack_inputs(model, stack, batches, settings)
        for block in stack.blocks:
            with visiting(model.get_submodule(block.name), settings.compute_device):
                stats = collect(model, block, stream, wanted, settings.relative_tokens, settings.storage_dtype)
            attention = ffn_path = None
            attention_flops = ffn_flops = 0.0
            shapes: tuple[PathPoint, ...] = ()
            if stats.heads is not None and block.attention is not None:
                cost = costs.attention[block.name]
                attention = _relative(
                    attention_path(model, block.attention, stats.heads, cost, settings.ridge), stats.energy
                )
                attention_flops = cost.flops(block.attention.num_heads, block.attention.num_kv_heads)
                if settings.uniform:
                    every = attention_shape_points(model, block.attention, stats.heads, cost, settings.ridge)
                    shapes = tuple(_relative(list(every), stats.energy))
            if stats.channels is not None and block.ffn is not None:
                cost_ffn = costs.ffn[block.name]
                if settings.low_rank:
                    assert settings.ffn_operator is not None
                    raw = low_rank_path(model, block.ffn, stats, cost_ffn, settings.ridge, settings.ffn_operator)
                else:
                    raw = width_path(model, block.ffn, stats.channels, cost_ffn, settings.ridge)
                ffn_path = _relative(raw, stats.energy)
                ffn_flops = cost_ffn.flops(stats.channels.features)
            paths[block.name] = BlockPaths(attention, ffn_path, attention_flops, ffn_flops, shapes)
            del stats
            tick(len(paths), total)
    return paths


@dataclass
class WalkReport:
    """What the walk did at every block: kept heads and channels, ranks, re-fit errors (relative)."""

    blocks: dict[str, dict[str, Any]] = field(default_factory=dict)
    kept_heads: dict[str, list[int]] = field(default_factory=dict)  # attention site -> kept heads
    widths: dict[str, int] = field(default_factory=dict)  # FFN site -> kept channels
    ranks: dict[str, int] = field(default_factory=dict)  # FFN linear -> rank


def _cuts_attention(block: Block, plan: BlockPlan) -> bool:
    site = block.attention
    full = None if site is None else AttentionShape(site.num_kv_heads, site.group_size)
    return site is not None and plan.attention is not None and plan.attention != full


def _cuts_width(model: nn.Module, block: Block, plan: BlockPlan) -> bool:
    site = block.ffn
    return (
        site is not None and plan.ffn_width is not None and plan.ffn_width < get_linear(model, site.output).in_features
    )


def _compress_block(
    model: nn.Module,
    block: Block,
    plan: BlockPlan,
    stream: list[BlockBatch],
    method: HeadImportance,
    costs: Costs,
    settings: EngineSettings,
    report: WalkReport,
    reference: tuple[nn.Module, list[BlockBatch]] | None,
) -> dict[str, Any]:
    entry: dict[str, Any] = {}
    relative = settings.relative_tokens
    if _cuts_attention(block, plan):
        assert block.attention is not None and plan.attention is not None
        wanted = Wanted(heads=True, head_statistics=method.needs_head_statistics)
        stats = collect(model, block, stream, wanted, relative, reference=reference)
        cost = costs.attention[block.name]
        entry["attention"] = cut_heads(
            model, block.attention, plan.attention, stats, method, cost, settings.ridge, settings.reconstruct
        )
        report.kept_heads[block.attention.name] = entry["attention"]["kept_heads"]
    site = block.ffn
    if site is not None and _cuts_width(model, block, plan):
        assert plan.ffn_width is not None
        stats = collect(model, block, stream, Wanted(channels=True), relative, reference=reference)
        cost_ffn = costs.ffn[block.name]
        entry["ffn"] = cut_width(model, site, plan.ffn_width, stats, cost_ffn, settings.ridge, settings.reconstruct)
        report.widths[site.name] = entry["ffn"]["width"]
    if site is not None and plan.ffn_low_rank is not None and plan.ffn_low_rank.ranks:
        assert settings.ffn_operator is not None
        # The input projections first, then the output projection on the hidden channels they now make.
        inputs = collect(model, block, stream, Wanted(ffn_inputs=True), relative).ffn_inputs
        assert inputs is not None
        ranks = factorise_at(model, site.inputs, inputs, plan.ffn_low_rank, settings.ridge, settings.ffn_operator)
        hidden = collect(model, block, stream, Wanted(channels=True), relative).channels
        assert hidden is not None
        operator = settings.ffn_operator
        ranks.update(factorise_at(model, (site.output,), hidden, plan.ffn_low_rank, settings.ridge, operator))
        entry["ffn"] = {"energy_loss": plan.ffn_low_rank.energy_loss, "ranks": ranks}
        report.ranks.update(ranks)
    return entry


def walk(
    model: nn.Module,
    stacks: Sequence[Stack],
    plan: CompressionPlan,
    batches: Sequence[Batch],
    method: HeadImportance,
    costs: Costs,
    settings: EngineSettings,
    ticks: tuple[Tick, Tick],
) -> WalkReport:
    """Compress every block in forward order on the activations of the blocks before it (step 3).

    With original targets the original model's activations are walked alongside (each block copied
    before it is cut, one block at a time), and re-fits aim at what the original block computes there.
    """
    report = WalkReport()
    total = sum(len(stack.blocks) for stack in stacks)
    done = 0
    originals = {s.name: stack_inputs(model, s, batches, settings) for s in stacks} if settings.original_targets else {}
    for stack in stacks:
        stream = stack_inputs(model, stack, batches, settings)
        original_stream = originals.pop(stack.name, None)
        for block in stack.blocks:
            ticks[0](done, total)
            reference = None
            if original_stream is not None:
                reference = (copy.deepcopy(model.get_submodule(block.name)), original_stream)
            block_plan = plan.blocks.get(block.name, BlockPlan(block.name))
            with visiting(model.get_submodule(block.name), settings.compute_device) as module:
                report.blocks[block.name] = _compress_block(
                    model, block, block_plan, stream, method, costs, settings, report, reference
                )
                advance(module, stream, settings.storage_dtype, block.name)
            if reference is not None:
                with visiting(reference[0], settings.compute_device) as copied:
                    advance(copied, reference[1], settings.storage_dtype, block.name)
            done += 1
            ticks[1](done, total)
    return report
