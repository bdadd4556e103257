"""The sequential walk: a stack's blocks one at a time, on activations held once on the CPU.

The inputs of a stack's first block are captured by hooks during one forward pass that stops at the
stack's last block, so the embeddings (and, for a VLM's language model, the vision tower and the
projector) run once; every block's other arguments (masks, position embeddings, position ids) are
kept too, because some families give blocks different ones (sliding-window layers get another mask
and other rotary embeddings). Each later block runs on the outputs of the block before it: block i
sees what the already-compressed blocks before it produce. Hidden states are stored on the CPU,
optionally in bfloat16; the other arguments are small, keep their dtype, and are stored once when
blocks share them.
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
    """One calibration batch as the blocks of a stack see it."""

    hidden: torch.Tensor  # [..., C] (usually [B, T, C]), stored on the CPU
    arguments: dict[str, tuple[tuple[Any, ...], dict[str, Any]]]  # block name -> its other args, kwargs
    token_mask: torch.Tensor | None  # hidden.shape[:-1]: tokens that count in statistics (None: all)


def move(value: Any, device: torch.device | str, memo: dict[int, Any] | None = None) -> Any:
    """Tensors inside tuples, lists and dicts moved to `device`; with `memo`, one copy per tensor (the
    memo keeps the originals alive, so that no other tensor can take their id meanwhile)."""
    if isinstance(value, torch.Tensor):
        if memo is None:
            return value.to(device)
        if id(value) not in memo:
            memo[id(value)] = (value, value.detach().to(device))
        return memo[id(value)][1]
    if isinstance(value, tuple):
        return tuple(move(v, device, memo) for v in value)
    if isinstance(value, list):
        return [move(v, device, memo) for v in value]
    if isinstance(value, dict):
        return {k: move(v, device, memo) for k, v in value.items()}
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
    blocks: Sequence[tuple[str, nn.Module]],
    batches: Sequence[Batch],
    storage_dtype: torch.dtype,
    masked: bool,
) -> list[BlockBatch]:
    """Run the model on every batch until the last of `blocks` (name, module), keeping the first
    block's hidden states and every block's other arguments.

    `masked`: the batches' 2-D attention mask says which tokens count (text parts with padding).
    """
    captured: list[BlockBatch] = []
    names = [name for name, _ in blocks]

    def hook_for(name: str):
        def hook(_: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
            if name == names[0]:
                hidden = args[0].detach()
                mask = current.get("attention_mask") if masked else None
                token_mask = mask.bool().cpu() if mask is not None and mask.shape == hidden.shape[:-1] else None
                captured.append(BlockBatch(hidden.to("cpu", storage_dtype), {}, token_mask))
            arguments = (args[1:], {k: _stateless(k, v) for k, v in kwargs.items()})
            captured[-1].arguments[name] = move(arguments, "cpu", memo)
            if name == names[-1]:
                raise StopForward

        return hook

    handles = [module.register_forward_pre_hook(hook_for(name), with_kwargs=True) for name, module in blocks]
    current: Batch = {}
    memo: dict[int, Any] = {}
    try:
        with torch.no_grad():
            for batch in batches:
                current = batch
                memo.clear()
                try:
                    model(**batch)
                except StopForward:
                    continue
                raise RuntimeError("the forward pass never reached the blocks whose inputs were to be captured")
    finally:
        for handle in handles:
            handle.remove()
    return captured


def block_output(block: nn.Module, batch: BlockBatch, name: str) -> torch.Tensor:
    """The block's output on one stored batch, computed where the block's weights are."""
    parameter = next(block.parameters())
    hidden = batch.hidden.to(parameter.device, parameter.dtype)
    args, kwargs = move(batch.arguments[name], parameter.device)
    output = block(hidden, *args, **kwargs)
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


def run_block(block: nn.Module, batch: BlockBatch, name: str) -> torch.Tensor | None:
    """Run the block (the stack's block `name`) on one batch; None when a hook stopped it early."""
    try:
        with torch.no_grad():
            return block_output(block, batch, name)
    except StopForward:
        return None


def advance(block: nn.Module, batches: list[BlockBatch], storage_dtype: torch.dtype, name: str) -> None:
    """Replace every batch's hidden states by the block's outputs (the next block's inputs), in place."""
    for batch in batches:
        output = run_block(block, batch, name)
        if output is None:
            raise RuntimeError("a hook stopped the block while advancing the walk")
        batch.hidden = output.detach().to("cpu", storage_dtype)
