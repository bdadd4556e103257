"""The sequential engine: measure every block, spread the budget, then compress block by block.

1. Paths. The original model is walked block by block; at each block one pass over the calibration
   activations gathers the Gram matrices of the inputs of the attention output projection (the
   concatenated head outputs) and of the FFN output projection (its hidden channels), and the removal
   paths of both halves are measured: how the re-fit error grows as heads and channels go. Errors are
   relative to the residual stream entering the block, so they compare across blocks.
2. Plan. The budget is spread over blocks and between attention and FFN at the least total error.
3. Walk. The model is walked again; at each block, on the activations the already-compressed blocks
   produce, the heads and channels to remove are chosen within the planned shape, removed, and the
   output projections re-fitted by ridge least squares toward the original block's outputs.

Statistics exist for one block at a time; calibration activations are held once, on the CPU.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from infoprune_core.adapters.base import AttentionSite, Block, FFNSite, Stack
from infoprune_core.calibration.moments import InputMoments, stream_energy, token_weights
from infoprune_core.calibration.statistics import AttentionStats, valid_rows
from infoprune_core.calibration.walk import BlockBatch, advance, capture_inputs, observing, run_block
from infoprune_core.ffn.width import ChannelRemoval, activation_scores
from infoprune_core.heads.base import HeadImportance
from infoprune_core.heads.selection import HeadRemoval, head_columns
from infoprune_core.plan.budget import BlockPaths
from infoprune_core.plan.flops import AttentionCost, FFNCost, FlopCount
from infoprune_core.plan.types import AttentionShape, BlockPlan, CompressionPlan, PathPoint
from infoprune_core.reconstruction import RemovalPath, ridge_refit
from infoprune_core.surgery import get_linear, prune_ffn_width, prune_heads

Batch = dict[str, torch.Tensor]
Tick = Callable[[int, int], None]


@dataclass(frozen=True)
class EngineSettings:
    ridge: float  # ridge strength of the re-fits, relative to the mean input energy
    reconstruct: bool  # re-fit the output projections after each cut
    relative_tokens: bool  # weight tokens by 1 / their residual-stream energy
    storage_dtype: torch.dtype  # of the calibration activations held between blocks
    attention: bool  # compress attention halves
    ffn: bool  # compress FFN halves


@dataclass
class BlockStatistics:
    attention: InputMoments | None = None  # inputs of the attention output projection
    ffn: InputMoments | None = None  # inputs of the FFN output projection
    heads: AttentionStats | None = None  # per-head eRank and Gram, for criteria that need them
    energy: float = 0.0  # sum_t w_t ||x_t||^2 of the block's input


@dataclass(frozen=True)
class Costs:
    """FLOP arithmetic of every block in scope, on the stated input."""

    attention: dict[str, AttentionCost]
    ffn: dict[str, FFNCost]

    @classmethod
    def of(cls, model: nn.Module, stacks: Sequence[Stack], counts: FlopCount) -> Costs:
        attention, ffn = {}, {}
        for block in (b for stack in stacks for b in stack.blocks):
            if block.attention is not None:
                hidden = get_linear(model, block.attention.o).out_features
                attention[block.name] = AttentionCost.of(block.attention, counts, hidden)
            if block.ffn is not None:
                hidden = get_linear(model, block.ffn.output).out_features
                ffn[block.name] = FFNCost.of(block.ffn, counts, hidden)
        return cls(attention, ffn)


def _has_bias(model: nn.Module, path: str) -> bool:
    return get_linear(model, path).bias is not None


def _augmented_weight(model: nn.Module, path: str) -> torch.Tensor:
    """[W, b] of a linear (W alone without a bias)."""
    linear = get_linear(model, path)
    weight = linear.weight.detach()
    return weight if linear.bias is None else torch.cat([weight, linear.bias.detach()[:, None]], 1)


def collect(
    model: nn.Module,
    block: Block,
    batches: Sequence[BlockBatch],
    settings: EngineSettings,
    attention: bool,
    ffn: bool,
    head_statistics: bool = False,
    advance_stream: bool = False,
) -> BlockStatistics:
    """One pass over the block's inputs gathering what `attention` and `ffn` ask for.

    The pass stops at the last projection it needs, unless `advance_stream`, which runs the whole
    block and replaces the stored activations by its outputs.
    """
    module = model.get_submodule(block.name)
    stats = BlockStatistics()
    site, ffn_site = block.attention, block.ffn
    if attention and site is not None:
        stats.attention = InputMoments(site.num_heads * site.head_dim, _has_bias(model, site.o))
        if head_statistics:
            device = next(module.parameters()).device
            stats.heads = AttentionStats.empty(site, device)
    if ffn and ffn_site is not None:
        stats.ffn = InputMoments(get_linear(model, ffn_site.output).in_features, _has_bias(model, ffn_site.output))
    weights = torch.empty(0)
    mask: torch.Tensor | None = None

    def on_heads(x: torch.Tensor) -> None:
        assert stats.attention is not None and site is not None
        stats.attention.add(x, weights.to(x.device))
        if stats.heads is not None:
            rows, valid = valid_rows(x, None if mask is None else mask.to(x.device))
            stats.heads.add(site, rows, valid)

    def on_channels(x: torch.Tensor) -> None:
        assert stats.ffn is not None
        stats.ffn.add(x, weights.to(x.device))

    with ExitStack() as hooks:
        last_stop = not advance_stream
        if stats.attention is not None and site is not None:
            stop_here = last_stop and stats.ffn is None
            hooks.enter_context(observing(model.get_submodule(site.o), on_heads, stop=stop_here))
        if stats.ffn is not None and ffn_site is not None:
            hooks.enter_context(observing(model.get_submodule(ffn_site.output), on_channels, stop=last_stop))
        for batch in batches:
            mask = batch.token_mask
            weights = token_weights(batch.hidden, mask, settings.relative_tokens)
            stats.energy += stream_energy(batch.hidden, weights)
            output = run_block(module, batch)
            if advance_stream:
                assert output is not None
                batch.hidden = output.detach().to("cpu", settings.storage_dtype)
    return stats


def _head_removal(
    model: nn.Module, site: AttentionSite, moments: InputMoments, cost: AttentionCost, ridge: float, scores
) -> HeadRemoval:
    path = RemovalPath(_augmented_weight(model, site.o), moments.gram, ridge, protected=int(moments.bias))
    return HeadRemoval(site, path, cost, scores)


def _channel_removal(
    model: nn.Module, site: FFNSite, moments: InputMoments, cost: FFNCost, ridge: float, scores
) -> ChannelRemoval:
    path = RemovalPath(_augmented_weight(model, site.output), moments.gram, ridge, protected=int(moments.bias))
    return ChannelRemoval(moments.features, path, cost, scores)


def _relative(points: list[PathPoint], energy: float) -> list[PathPoint]:
    scale = 1.0 / max(energy, 1e-30)
    return [PathPoint(p.flops_removed, p.error * scale, p.shape) for p in points]


def stack_inputs(
    model: nn.Module, stack: Stack, batches: Sequence[Batch], settings: EngineSettings
) -> list[BlockBatch]:
    first = model.get_submodule(stack.blocks[0].name)
    return capture_inputs(model, first, batches, settings.storage_dtype, masked=stack.part == "language")


def measure_paths(
    model: nn.Module,
    stacks: Sequence[Stack],
    batches: Sequence[Batch],
    costs: Costs,
    settings: EngineSettings,
    tick: Tick,
) -> dict[str, BlockPaths]:
    """Walk the original model and measure every block's removal paths (step 1)."""
    paths: dict[str, BlockPaths] = {}
    total = sum(len(stack.blocks) for stack in stacks)
    for stack in stacks:
        stream = stack_inputs(model, stack, batches, settings)
        for block in stack.blocks:
            stats = collect(model, block, stream, settings, settings.attention, settings.ffn, advance_stream=True)
            attention = ffn = None
            attention_flops = ffn_flops = 0.0
            if stats.attention is not None and block.attention is not None:
                cost = costs.attention[block.name]
                removal = _head_removal(model, block.attention, stats.attention, cost, settings.ridge, None)
                attention = _relative(removal.path_points(), stats.energy)
                attention_flops = removal.cost.flops(block.attention.num_heads, block.attention.num_kv_heads)
            if stats.ffn is not None and block.ffn is not None:
                channels = _channel_removal(model, block.ffn, stats.ffn, costs.ffn[block.name], settings.ridge, None)
                ffn = _relative(channels.path_points(), stats.energy)
                ffn_flops = channels.cost.flops(channels.width)
            paths[block.name] = BlockPaths(attention, ffn, attention_flops, ffn_flops)
            del stats
            tick(len(paths), total)
    return paths


@dataclass
class WalkReport:
    """What the walk did at every block: kept heads and channels, re-fit errors (relative)."""

    blocks: dict[str, dict[str, Any]] = field(default_factory=dict)
    kept_heads: dict[str, list[int]] = field(default_factory=dict)  # attention site -> kept heads
    widths: dict[str, int] = field(default_factory=dict)  # FFN site -> kept channels


def _cuts_attention(block: Block, plan: BlockPlan) -> bool:
    site = block.attention
    return (
        site is not None
        and plan.attention is not None
        and plan.attention != AttentionShape(site.num_kv_heads, site.group_size)
    )


def _cuts_ffn(model: nn.Module, block: Block, plan: BlockPlan) -> bool:
    site = block.ffn
    return (
        site is not None and plan.ffn_width is not None and plan.ffn_width < get_linear(model, site.output).in_features
    )


def _write_linear(model: nn.Module, path: str, augmented: torch.Tensor) -> None:
    linear = get_linear(model, path)
    with torch.no_grad():
        if linear.bias is not None:
            linear.weight.copy_(augmented[:, :-1])
            linear.bias.copy_(augmented[:, -1])
        else:
            linear.weight.copy_(augmented)


def _kept_columns(columns: torch.Tensor, moments: InputMoments) -> torch.Tensor:
    """Kept input columns, plus the constant column when the linear has a bias."""
    if moments.bias:
        columns = torch.cat([columns, torch.tensor([moments.features])])
    return columns


def compress_attention(
    model: nn.Module,
    block: Block,
    plan: BlockPlan,
    stream: Sequence[BlockBatch],
    method: HeadImportance,
    cost: AttentionCost,
    settings: EngineSettings,
) -> dict[str, Any]:
    site = block.attention
    assert site is not None and plan.attention is not None
    stats = collect(
        model, block, stream, settings, attention=True, ffn=False, head_statistics=method.needs_head_statistics
    )
    assert stats.attention is not None
    moments = stats.attention
    scores = method.block_scores(site, stats.heads, get_linear(model, site.o).weight.detach())
    removal = _head_removal(model, site, moments, cost, settings.ridge, scores)
    kept = removal.reach(plan.attention)
    original = _augmented_weight(model, site.o)
    prune_heads(model, site, kept)
    if settings.reconstruct:
        columns = _kept_columns(head_columns(kept, site.head_dim), moments)
        _write_linear(model, site.o, ridge_refit(original, moments.gram, columns, settings.ridge, moments.features))
    return {"kept_heads": kept, "refit_error": removal.path.error / max(stats.energy, 1e-30)}


def compress_ffn(
    model: nn.Module,
    block: Block,
    plan: BlockPlan,
    stream: Sequence[BlockBatch],
    cost: FFNCost,
    settings: EngineSettings,
) -> dict[str, Any]:
    site = block.ffn
    assert site is not None and plan.ffn_width is not None
    stats = collect(model, block, stream, settings, attention=False, ffn=True)
    assert stats.ffn is not None
    moments = stats.ffn
    original = _augmented_weight(model, site.output)
    # Without a re-fit the OBS cost does not apply; channels go by activation-weighted output energy.
    scores = None if settings.reconstruct else activation_scores(moments, original)
    removal = _channel_removal(model, site, moments, cost, settings.ridge, scores)
    kept = removal.reach(plan.ffn_width)
    mean = moments.mean.float() if moments.bias and not settings.reconstruct else None
    prune_ffn_width(model, site, kept, mean)
    if settings.reconstruct:
        columns = _kept_columns(torch.tensor(kept), moments)
        _write_linear(
            model, site.output, ridge_refit(original, moments.gram, columns, settings.ridge, moments.features)
        )
    return {"width": len(kept), "refit_error": removal.path.error / max(stats.energy, 1e-30)}


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
    """Compress every block in forward order on the activations of the blocks before it (step 3)."""
    report = WalkReport()
    total = sum(len(stack.blocks) for stack in stacks)
    done = 0
    for stack in stacks:
        stream = stack_inputs(model, stack, batches, settings)
        for block in stack.blocks:
            block_plan = plan.blocks.get(block.name, BlockPlan(block.name))
            entry: dict[str, Any] = {}
            if _cuts_attention(block, block_plan):
                assert block.attention is not None
                entry["attention"] = compress_attention(
                    model, block, block_plan, stream, method, costs.attention[block.name], settings
                )
                report.kept_heads[block.attention.name] = entry["attention"]["kept_heads"]
            ticks[0](done + 1, total)
            if _cuts_ffn(model, block, block_plan):
                assert block.ffn is not None
                entry["ffn"] = compress_ffn(model, block, block_plan, stream, costs.ffn[block.name], settings)
                report.widths[block.ffn.name] = entry["ffn"]["width"]
            advance(model.get_submodule(block.name), list(stream), settings.storage_dtype)
            report.blocks[block.name] = entry
            done += 1
            ticks[1](done, total)
    return report


def iter_blocks(stacks: Sequence[Stack]) -> Iterator[Block]:
    for stack in stacks:
        yield from stack.blocks
