"""One pass of a block over the stored calibration activations, gathering the inputs of its projections.

What is gathered (any of: the attention output projection's inputs, i.e. the concatenated head
outputs; the FFN output projection's inputs, its hidden channels; the FFN input projections' inputs)
is asked for per pass. A pass stops at the last projection it needs, unless it advances the stream:
then the whole block runs and its outputs replace the stored activations.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass

import torch
from torch import nn

from infoprune_core.adapters.base import Block
from infoprune_core.calibration.moments import InputMoments, stream_energy, token_weights
from infoprune_core.calibration.statistics import AttentionStats, valid_rows
from infoprune_core.calibration.walk import BlockBatch, observing, run_block
from infoprune_core.surgery import get_linear


@dataclass(frozen=True)
class Wanted:
    heads: bool = False  # inputs of the attention output projection
    head_statistics: bool = False  # per-head eRank and Gram (criteria that need them)
    ffn_inputs: bool = False  # inputs of the FFN input projections (low-rank whitening)
    channels: bool = False  # inputs of the FFN output projection


@dataclass
class BlockStatistics:
    heads: InputMoments | None = None
    head_statistics: AttentionStats | None = None
    ffn_inputs: InputMoments | None = None
    channels: InputMoments | None = None
    energy: float = 0.0  # sum_t w_t ||x_t||^2 of the block's input: what its errors are relative to


def _moments(model: nn.Module, path: str, with_bias: bool, cross: bool = False) -> InputMoments:
    linear = get_linear(model, path)
    bias = with_bias and linear.bias is not None
    return InputMoments(linear.in_features, bias, cross=cross, device=linear.weight.device)


class _Originals:
    """The inputs the same projections see in the original block on the original stream, per batch."""

    def __init__(self, reference: nn.Module, block: Block, paths: Sequence[str]) -> None:
        self.reference = reference
        self.name = block.name
        self.relative = {path: path[len(block.name) + 1 :] for path in paths}
        self.seen: dict[str, torch.Tensor] = {}

    def run(self, batch: BlockBatch) -> None:
        self.seen.clear()
        with ExitStack() as hooks:
            for path, relative in self.relative.items():

                def keep(x: torch.Tensor, path: str = path) -> None:
                    self.seen[path] = x

                hooks.enter_context(observing(self.reference.get_submodule(relative), keep))
            run_block(self.reference, batch, self.name)


def collect(
    model: nn.Module,
    block: Block,
    batches: Sequence[BlockBatch],
    wanted: Wanted,
    relative_tokens: bool,
    advance_dtype: torch.dtype | None = None,
    reference: tuple[nn.Module, Sequence[BlockBatch]] | None = None,
) -> BlockStatistics:
    """Gather `wanted` over every batch; with `advance_dtype`, also advance the stream (stored in it).

    With a `reference` (the block as it was, and the original model's activations for it), the output
    projections' moments also get their cross moments with the inputs they see there.
    """
    module = model.get_submodule(block.name)
    cross = reference is not None
    site, ffn = block.attention, block.ffn
    stats = BlockStatistics()
    observers = []  # (module path, callback) in forward order
    weights = torch.empty(0)
    mask: torch.Tensor | None = None
    if wanted.heads and site is not None:
        heads = stats.heads = _moments(model, site.o, with_bias=True, cross=cross)
        if wanted.head_statistics:
            stats.head_statistics = AttentionStats.empty(site, next(module.parameters()).device)

        def on_heads(x: torch.Tensor) -> None:
            heads.add(x, weights.to(x.device), original(site.o))
            if stats.head_statistics is not None and site is not None:
                rows, valid = valid_rows(x, None if mask is None else mask.to(x.device))
                stats.head_statistics.add(site, rows, valid)

        observers.append((site.o, on_heads))
    if wanted.ffn_inputs and ffn is not None:
        inputs = stats.ffn_inputs = _moments(model, ffn.inputs[0], with_bias=False)
        observers.append((ffn.inputs[0], lambda x: inputs.add(x, weights.to(x.device))))
    if wanted.channels and ffn is not None:
        channels = stats.channels = _moments(model, ffn.output, with_bias=True, cross=cross)
        channels_path = ffn.output
        observers.append((channels_path, lambda x: channels.add(x, weights.to(x.device), original(channels_path))))
    originals = None if reference is None else _Originals(reference[0], block, [path for path, _ in observers])

    def original(path: str) -> torch.Tensor | None:
        return None if originals is None else originals.seen[path]

    with ExitStack() as hooks:
        for index, (path, observe) in enumerate(observers):
            last = index == len(observers) - 1
            hooks.enter_context(observing(model.get_submodule(path), observe, stop=last and advance_dtype is None))
        for index, batch in enumerate(batches):
            if originals is not None and reference is not None:
                originals.run(reference[1][index])
            mask = batch.token_mask
            weights = token_weights(batch.hidden, mask, relative_tokens)
            stats.energy += stream_energy(batch.hidden, weights)
            output = run_block(module, batch, block.name)
            if advance_dtype is not None:
                if output is None:
                    raise RuntimeError("a hook stopped the block while advancing the walk")
                batch.hidden = output.detach().to("cpu", advance_dtype)
    return stats
