"""The FLAP-style baseline: the budget is met, the order is the fluctuation metric's, means are kept."""

from __future__ import annotations

import copy

import pytest
import torch

from benchmarks.peers.flap import _channel_moments, prune_with_flap
from infoprune_core.modeling import adapter_for_config
from infoprune_core.plan.flops import count_flops
from infoprune_core.surgery import get_linear
from tests.core.tiny_models import FAMILIES, sample_inputs


def _scope_flops(model, adapter, inputs) -> float:
    by_part = count_flops(model, adapter.attention_sites(model), inputs).by_part(adapter, model)
    return by_part["vision"] + by_part["language"]


@pytest.mark.parametrize("family", ["llama", "bert", "clip", "llava"])
def test_flap_meets_the_budget_and_keeps_channel_order(family: str) -> None:
    model = FAMILIES[family]()
    adapter = adapter_for_config(model.config.to_dict())
    batches = [sample_inputs(model, batch=4)]
    flop_input = {k: v[:1] for k, v in batches[0].items()}
    before = _scope_flops(model, adapter, flop_input)
    original = copy.deepcopy(model)
    details = prune_with_flap(model, adapter, ("vision", "language"), batches, flop_input, 0.6)
    after = _scope_flops(model, adapter, flop_input)
    assert 0.5 < after / before <= 0.6 + 1e-9
    assert after / before == pytest.approx(details["planned_scope_ratio"])
    with torch.no_grad():
        model(**batches[0])  # the pruned model runs
    # Within a layer FLAP removes the channels of least fluctuation (variance x column energy) first.
    sites = {block.name: block.ffn for stack in adapter.stacks(original) for block in stack.blocks if block.ffn}
    moments = _channel_moments(original, [site.output for site in sites.values()], batches)
    for block, removed in details["channels_removed"].items():
        site = sites[block]
        weight = get_linear(original, site.output).weight.detach().double()
        score = moments[site.output].variance * weight.pow(2).sum(0)
        kept = [j for j in range(score.numel()) if j not in set(removed)]
        assert float(score[removed].max()) <= float(score[kept].min()) + 1e-12


def test_flap_compensates_the_mean_of_what_it_removes() -> None:
    """With only FFN channels of the last block cut, the block's mean output over the calibration
    tokens is what it was: the removed channels' mean contribution moved into the (new) bias."""
    model = FAMILIES["llama"]()
    adapter = adapter_for_config(model.config.to_dict())
    batches = [sample_inputs(model, batch=4)]
    site = adapter.ffn_sites(model)[-1]

    def mean_output(m: torch.nn.Module) -> torch.Tensor:
        seen = []
        handle = m.get_submodule(site.output).register_forward_hook(lambda _, __, out: seen.append(out))
        with torch.no_grad():
            m(**batches[0])
        handle.remove()
        mask = batches[0]["attention_mask"].bool()
        return seen[0][mask].double().mean(0)

    reference = mean_output(model)
    stack = adapter.stacks(model)[0]
    last = stack.blocks[-1]
    only_last_ffn = type(stack)(stack.name, stack.part, (type(last)(last.name, last.part, None, last.ffn),))
    adapter.stacks = lambda _m: [only_last_ffn]  # type: ignore[method-assign]
    flop_input = {k: v[:1] for k, v in batches[0].items()}
    details = prune_with_flap(model, adapter, ("language",), batches, flop_input, 0.9)
    assert details["channels_removed"], "some channels were cut"
    torch.testing.assert_close(mean_output(model), reference, rtol=1e-4, atol=1e-5)
