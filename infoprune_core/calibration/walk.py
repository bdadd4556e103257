"""The sequential walk: a stack's blocks one at a time, on activations held once on the CPU.

The inputs of a stack's first block (hidden states and every other argument the block gets: masks,
position embeddings, position ids) are captured with a hook that stops the model right there, so
the embeddings (and, for a VLM's language model, the vision tower and projector) run once. Each
later block runs on the outputs of the block before it: block i sees what the already-compressed
blocks before it produce. Hidden states are stored on the CPU, optionally in bfloat16; the other
arguments are small and keep their dtype.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from transformers import Cache

Batch = Mapping[str, torch.Tensor]


class StopForward(Exception):
    """Raised by a hook to end a forward pass early, once what it came for has been seen."""


@dataclass
class BlockBatch:
    """One calibration batch as a block sees it."""

    hidden: torch.Tensor  # [B, T, C], stored on the CPU
    args: tuple[Any, ...]  # the block's other positional arguments
    kwargs: dict[str, Any]
    token_mask: torch.Tensor | None  # [B, T] tokens that count in statistics (None: all)


def move(value: Any, device: torch.device | str) -> Any:
    """Tensors inside tuples, lists and dicts moved to `device` (other values as they are)."""
    if isinstance(value, torch.Tensor):
        return value.to(device)
    if isinstance(value, tuple):
        return tuple(move(v, device) for v in value)
    if isinstance(value, list):
        return [move(v, device) for v in value]
    if isinstance(value, dict):
        return {k: move(v, device) for k, v in value.items()}
    return value


def _stateless(name: str, value: Any) -> Any:
    """An argument as a block may see it again and again: no KV cache (it would grow every call)."""
    if isinstance(value, Cache) or name == "past_key_values":
        return None
    if name == "use_cache":
        return False
    return value.detach() if isinstance(value, torch.Tensor) else value


def capture_inputs(
    model: nn.Module,
    block: nn.Module,
    batches: Sequence[Batch],
    storage_dtype: torch.dtype,
    masked: bool,
) -> list[BlockBatch]:
    """Run the model on every batch until `block` and keep what the block would have received.

    `masked`: the batches' 2-D attention mask says which tokens count (text parts with padding).
    """
    captured: list[BlockBatch] = []

    def hook(_: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        hidden = args[0].detach()
        mask = current.get("attention_mask") if masked else None
        token_mask = mask.bool().cpu() if mask is not None and mask.shape == hidden.shape[:2] else None
        captured.append(
            BlockBatch(
                hidden=hidden.to("cpu", storage_dtype),
                args=move(tuple(a.detach() if isinstance(a, torch.Tensor) else a for a in args[1:]), "cpu"),
                kwargs=move({k: _stateless(k, v) for k, v in kwargs.items()}, "cpu"),
                token_mask=token_mask,
            )
        )
        raise StopForward

    handle = block.register_forward_pre_hook(hook, with_kwargs=True)
    current: Batch = {}
    try:
        with torch.no_grad():
            for batch in batches:
                current = batch
                try:
                    model(**batch)
                except StopForward:
                    continue
                raise RuntimeError("the forward pass never reached the block whose inputs were to be captured")
    finally:
        handle.remove()
    return captured


def block_output(block: nn.Module, batch: BlockBatch) -> torch.Tensor:
    """The block's output on one stored batch, computed where the block's weights are."""
    parameter = next(block.parameters())
    hidden = batch.hidden.to(parameter.device, parameter.dtype)
    output = block(hidden, *move(batch.args, parameter.device), **move(batch.kwargs, parameter.device))
    return output[0] if isinstance(output, tuple) else output


@contextmanager
def observing(module: nn.Module, observe: Callable[[torch.Tensor], None], stop: bool = False) -> Iterator[None]:
    """Call `observe(input)` whenever `module` runs while inside; with `stop`, end the forward there."""

    def hook(_: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        observe(args[0].detach())
        if stop:
            raise StopForward

    handle = module.register_forward_pre_hook(hook)
    try:
        yield
    finally:
        handle.remove()


def run_block(block: nn.Module, batch: BlockBatch) -> torch.Tensor | None:
    """Run the block on one batch; None when a hook stopped it early."""
    try:
        with torch.no_grad():
            return block_output(block, batch)
    except StopForward:
        return None


def advance(block: nn.Module, batches: list[BlockBatch], storage_dtype: torch.dtype) -> None:
    """Replace every batch's hidden states by the block's outputs (the next block's inputs), in place."""
    for batch in batches:
        output = run_block(block, batch)
        if output is None:
            raise RuntimeError("a hook stopped the block while advancing the walk")
        batch.hidden = output.detach().to("cpu", storage_dtype)
