"""The sequential walk: captured first-block inputs, block by block, reproduce the model exactly."""

from __future__ import annotations

import pytest
import torch

from infoprune_core.calibration.walk import advance, capture_inputs
from infoprune_core.modeling import adapter_for_config
from tests.core.tiny_models import FAMILIES, sample_inputs


def _stack_outputs(model: torch.nn.Module, last_block: torch.nn.Module, inputs: dict) -> torch.Tensor:
    seen = []
    handle = last_block.register_forward_hook(lambda _, __, output: seen.append(output))
    with torch.no_grad():
        model(**inputs)
    handle.remove()
    output = seen[0]
    return output[0] if isinstance(output, tuple) else output


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_walk_with_nothing_cut_reproduces_every_stack(family: str) -> None:
    model = FAMILIES[family]()
    adapter = adapter_for_config(model.config.to_dict())
    batches = [sample_inputs(model, batch=2), sample_inputs(model, batch=3)]
    for stack in adapter.stacks(model):
        blocks = [(block.name, model.get_submodule(block.name)) for block in stack.blocks]
        stream = capture_inputs(model, blocks, batches, torch.float32, masked=stack.part == "language")
        for block in stack.blocks:
            advance(model.get_submodule(block.name), stream, torch.float32, block.name)
        last = model.get_submodule(stack.blocks[-1].name)
        for batch, stored in zip(batches, stream, strict=True):
            torch.testing.assert_close(stored.hidden, _stack_outputs(model, last, batch), rtol=1e-5, atol=1e-5)


def test_activations_can_be_held_in_bfloat16() -> None:
    model = FAMILIES["llama"]()
    stack = adapter_for_config(model.config.to_dict()).stacks(model)[0]
    batches = [sample_inputs(model)]
    blocks = [(block.name, model.get_submodule(block.name)) for block in stack.blocks]
    stream = capture_inputs(model, blocks, batches, torch.bfloat16, masked=True)
    assert stream[0].hidden.dtype == torch.bfloat16
    assert stream[0].token_mask is not None and not bool(stream[0].token_mask[0, 0]), "left padding is masked"
    for block in stack.blocks:
        advance(model.get_submodule(block.name), stream, torch.bfloat16, block.name)
    exact = _stack_outputs(model, model.get_submodule(stack.blocks[-1].name), batches[0])
    assert stream[0].hidden.dtype == torch.bfloat16
    torch.testing.assert_close(stream[0].hidden.float(), exact, rtol=0.05, atol=0.05)
