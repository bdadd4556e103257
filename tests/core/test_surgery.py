"""The key invariant: a model with a head mask gives the outputs of the physically pruned model."""

from __future__ import annotations

import pytest
import torch

from infoprune_core.modeling import adapter_for_config
from infoprune_core.surgery import head_masks, prune_ffn_width, prune_heads
from tests.core.tiny_models import FAMILIES, sample_inputs, tiny_bert, tiny_llama


def _output(model, inputs):
    """What the family's adapter reads as the model's output (logits, features or embeddings)."""
    with torch.no_grad():
        return adapter_for_config(model.config.to_dict()).read_output(model(**inputs))[0]


def _kept_heads(site, layer: int) -> list[int]:
    """Drop one query head from each KV group (GQA) or heads 0 and 2 (MHA), varying by layer."""
    if site.num_kv_heads < site.num_heads:
        return [h for h in range(site.num_heads) if h % site.group_size != layer % site.group_size]
    return [h for h in range(site.num_heads) if h not in (layer % site.num_heads, 2)]


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_masked_model_equals_pruned_model(family: str) -> None:
    model = FAMILIES[family]()
    adapter = adapter_for_config(model.config.to_dict())
    sites = adapter.attention_sites(model)
    assert sites, "adapter found no attention blocks"
    inputs = sample_inputs(model)
    kept = {site.name: _kept_heads(site, i) for i, site in enumerate(sites)}
    masks = {}
    for site in sites:
        mask = torch.zeros(site.num_heads)
        mask[kept[site.name]] = 1
        masks[site.o] = mask
    with head_masks(model, masks):
        masked = _output(model, inputs)
    reference = _output(model, inputs)
    assert not torch.allclose(masked, reference, atol=1e-4), "the mask must change the output"
    for site in sites:
        prune_heads(model, site, kept[site.name])
    pruned = _output(model, inputs)
    torch.testing.assert_close(pruned, masked, rtol=1e-4, atol=1e-5)
    params_after = sum(p.numel() for p in model.parameters())
    assert params_after < sum(p.numel() for p in FAMILIES[family]().parameters())


def test_gqa_can_drop_whole_kv_group() -> None:
    model = tiny_llama()
    site = adapter_for_config(model.config.to_dict()).attention_sites(model)[0]
    inputs = sample_inputs(model)
    mask = torch.tensor([1.0, 1, 1, 0, 0, 0])
    with head_masks(model, {site.o: mask}):
        masked = _output(model, inputs)
    new_site = prune_heads(model, site, [0, 1, 2])
    assert (new_site.num_heads, new_site.num_kv_heads) == (3, 1)
    assert model.get_submodule(site.k).out_features == site.head_dim
    torch.testing.assert_close(_output(model, inputs), masked, rtol=1e-4, atol=1e-5)


def test_gqa_uneven_groups_are_refused() -> None:
    model = tiny_llama()
    site = adapter_for_config(model.config.to_dict()).attention_sites(model)[0]
    with pytest.raises(ValueError, match="same number of kept query heads"):
        prune_heads(model, site, [0, 1, 3])
    with pytest.raises(ValueError, match="at least one head"):
        prune_heads(model, site, [])


def test_ffn_width_pruning_equals_zeroed_neurons() -> None:
    model = tiny_bert()
    adapter = adapter_for_config(model.config.to_dict())
    site = adapter.ffn_sites(model)[0]
    inputs = sample_inputs(model)
    removed = torch.arange(0, 96, 3)
    output = model.get_submodule(site.output)

    def zero_removed(_, args):
        x = args[0].clone()
        x[..., removed] = 0
        return (x,)

    handle = output.register_forward_pre_hook(zero_removed)
    zeroed = _output(model, inputs)
    handle.remove()
    kept = [i for i in range(96) if i not in set(removed.tolist())]
    prune_ffn_width(model, site, kept)
    torch.testing.assert_close(_output(model, inputs), zeroed, rtol=1e-4, atol=1e-5)
    assert model.get_submodule(site.inputs[0]).out_features == len(kept)
