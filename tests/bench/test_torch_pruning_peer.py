"""Torch-Pruning as a peer baseline: it reaches InfoPrune's FLOP budget on every family and scope.

Tiny models from config classes (BERT, Llama with GQA: 6 q / 2 kv and SmolLM2's 9 q / 3 kv heads,
LLaVA with a CLIP tower) at 0.6 of the scope's FLOPs, magnitude and Taylor importance: the status is
ok, the FLOPs ratio (InfoPrune's counter) is within tolerance, the pruned copy runs with the original
output shapes, has fewer parameters, and everything outside the scope is byte-identical. The pruned
model computes exactly what the original computes with the removed heads and channels masked.
"""

from __future__ import annotations

import copy

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedModel

from infoprune_core.adapters import adapter_for
from infoprune_core.plan.flops import count_flops
from tests.core.tiny_models import sample_inputs, tiny_bert, tiny_llama, tiny_llava

pytest.importorskip("torch_pruning")

from benchmarks.peers import PeerOutcome, prune_with_torch_pruning
from benchmarks.peers.torch_pruning_peer import Importance

TARGET = 0.6
TOLERANCE = 0.02


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


def tiny_smollm() -> PreTrainedModel:
    """SmolLM2's head layout (9 query heads over 3 KV heads), tiny."""
    torch.manual_seed(0)
    config = LlamaConfig(
        hidden_size=72,
        intermediate_size=96,
        num_hidden_layers=2,
        num_attention_heads=9,
        num_key_value_heads=3,
        vocab_size=64,
        max_position_embeddings=128,
    )
    return LlamaForCausalLM(config).eval()


FACTORIES = {"bert": tiny_bert, "llama": tiny_llama, "smollm": tiny_smollm, "llava": tiny_llava}
CASES = [
    ("bert", ("language",)),
    ("llama", ("language",)),
    ("smollm", ("language",)),
    ("llava", ("vision",)),
    ("llava", ("language",)),
    ("llava", ("vision", "language")),
]


def _outputs(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    with torch.no_grad():
        output = model(**batch)
    logits = getattr(output, "logits", None)
    return logits if logits is not None else output.last_hidden_state


def _prune(family: str, scope: tuple[str, ...], importance: Importance) -> tuple[PreTrainedModel, PeerOutcome]:
    model = FACTORIES[family]()
    adapter = adapter_for(model.config.model_type)
    batches = [sample_inputs(model, batch=2), sample_inputs(model, batch=2, length=8)]
    flop_input = {key: value[:1] for key, value in sample_inputs(model, batch=1).items()}
    outcome = prune_with_torch_pruning(model, adapter, scope, batches, flop_input, importance, TARGET, TOLERANCE)
    return model, outcome


@pytest.mark.parametrize("importance", ["magnitude", "taylor"])
@pytest.mark.parametrize(("family", "scope"), CASES, ids=[f"{f}-{'+'.join(s)}" for f, s in CASES])
def test_reaches_the_budget_and_leaves_the_rest_untouched(
    family: str, scope: tuple[str, ...], importance: Importance
) -> None:
    original, outcome = _prune(family, scope, importance)
    assert outcome.status == "ok", outcome.reason
    assert outcome.model is not None and outcome.pruning_ratio is not None
    assert outcome.achieved_scope_flops_ratio is not None
    assert abs(outcome.achieved_scope_flops_ratio - TARGET) <= TOLERANCE
    pruned = outcome.model
    assert pruned is not original

    # The FLOP ratio is InfoPrune's own count over the scope.
    adapter = adapter_for(original.config.model_type)
    flop_input = {key: value[:1] for key, value in sample_inputs(original, batch=1).items()}

    def scope_flops(model: torch.nn.Module) -> float:
        by_part = count_flops(model, adapter.attention_sites(model), flop_input).by_part(adapter, model)
        return sum(by_part[part] for part in scope)

    assert scope_flops(pruned) / scope_flops(original) == pytest.approx(outcome.achieved_scope_flops_ratio)

    # It runs, on a batch of another size too, with the original output shapes.
    for batch in (sample_inputs(original, batch=2), sample_inputs(original, batch=3, length=7)):
        expected, got = _outputs(original, batch), _outputs(pruned, batch)
        assert got.shape == expected.shape
        assert torch.isfinite(got).all()
    assert sum(p.numel() for p in pruned.parameters()) < sum(p.numel() for p in original.parameters())

    # Heads were pruned in the scope (whole heads, GQA groups kept consistent), hidden size kept.
    sites = {site.name: site for site in adapter.attention_sites(original)}
    pruned_sites = {site.name: site for site in adapter.attention_sites(pruned)}
    assert any(pruned_sites[name].num_heads < site.num_heads for name, site in sites.items() if site.part in scope)
    for name, site in pruned_sites.items():
        assert site.head_dim == sites[name].head_dim
        if sites[name].num_kv_heads < sites[name].num_heads:  # GQA: query heads go, KV heads stay
            assert site.num_kv_heads == sites[name].num_kv_heads
        else:
            assert site.num_kv_heads == site.num_heads
        assert site.num_heads % site.num_kv_heads == 0
        holder = pruned.get_submodule(site.q.rpartition(".")[0])
        groups = getattr(holder, "num_key_value_groups", None)
        assert groups is None or groups == site.num_heads // site.num_kv_heads
        assert pruned.get_submodule(site.o).out_features == original.get_submodule(sites[name].o).out_features

    # Parts outside the scope, and everything in it but the attention and FFN linears (embeddings,
    # norms, heads, poolers, projector), are byte-identical.
    in_scope_linears = {
        path
        for site in adapter.attention_sites(original)
        if site.part in scope
        for path in (site.q, site.k, site.v, site.o)
    } | {path for ffn in adapter.ffn_sites(original) if ffn.part in scope for path in (*ffn.inputs, ffn.output)}
    before, after = original.state_dict(), pruned.state_dict()
    assert after.keys() == before.keys()
    untouched = [key for key in before if key.rpartition(".")[0] not in in_scope_linears]
    assert any(adapter.part_of(original, key.rpartition(".")[0]) not in scope for key in untouched) or scope == (
        "language",
    )
    for key in untouched:
        assert after[key].shape == before[key].shape, key
        assert torch.equal(after[key], before[key]), key
    assert all(p.grad is None for p in pruned.parameters())
    assert all(p.grad is None for p in original.parameters())


@pytest.mark.parametrize("family", ["bert", "smollm", "llava"])
def test_pruned_model_equals_the_original_with_those_heads_and_channels_masked(family: str) -> None:
    """Torch-Pruning removed whole heads (per KV group under GQA) and FFN channels, and nothing else."""
    original, outcome = _prune(family, ("vision", "language") if family == "llava" else ("language",), "taylor")
    assert outcome.status == "ok" and outcome.model is not None, outcome.reason
    pruned, masked = outcome.model, copy.deepcopy(original)
    adapter = adapter_for(original.config.model_type)
    with torch.no_grad():
        for site in adapter.attention_sites(original):
            q, q_pruned, d = original.get_submodule(site.q).weight, pruned.get_submodule(site.q).weight, site.head_dim
            kept = {
                h
                for h in range(site.num_heads)
                for j in range(q_pruned.shape[0] // d)
                if torch.equal(q[h * d : (h + 1) * d], q_pruned[j * d : (j + 1) * d])
            }
            removed = sorted(set(range(site.num_heads)) - kept)
            assert len(kept) == q_pruned.shape[0] // d
            if site.num_kv_heads < site.num_heads:  # the same number of query heads left in every KV group
                group = site.num_heads // site.num_kv_heads
                assert len({sum(1 for h in removed if h // group == g) for g in range(site.num_kv_heads)}) == 1
            for h in removed:
                masked.get_submodule(site.o).weight[:, h * d : (h + 1) * d] = 0
        for ffn in adapter.ffn_sites(original):
            rows = {tuple(row.tolist()) for row in pruned.get_submodule(ffn.inputs[0]).weight}
            weight = original.get_submodule(ffn.inputs[0]).weight
            gone = [i for i in range(weight.shape[0]) if tuple(weight[i].tolist()) not in rows]
            masked.get_submodule(ffn.output).weight[:, gone] = 0
    batch = sample_inputs(original, batch=2)
    torch.testing.assert_close(_outputs(pruned, batch), _outputs(masked, batch), rtol=1e-4, atol=1e-5)


def test_a_head_step_over_the_window_holds_the_heads_and_prunes_channels() -> None:
    # Tiny BERT (4 heads): one head less is 0.75 of the FLOPs, two heads less 0.61; 0.68 lies in the jump.
    model = tiny_bert()
    adapter = adapter_for("bert")
    flop_input = {key: value[:1] for key, value in sample_inputs(model, batch=1).items()}
    outcome = prune_with_torch_pruning(model, adapter, ["language"], [], flop_input, "magnitude", 0.68)
    assert outcome.status == "ok", outcome.reason
    assert outcome.achieved_scope_flops_ratio is not None and abs(outcome.achieved_scope_flops_ratio - 0.68) <= 0.02
    assert outcome.details["phase"] == "channels"
    assert outcome.pruning_ratio is not None and outcome.pruning_ratio > outcome.details["head_pruning_ratio"]
    assert set(outcome.details["heads"].values()) == {3}
    assert len(outcome.details["tries"]) <= 8


def test_unreachable_target_is_reported_with_the_closest_ratio() -> None:
    model = tiny_bert()
    adapter = adapter_for("bert")
    flop_input = {key: value[:1] for key, value in sample_inputs(model, batch=1).items()}
    outcome = prune_with_torch_pruning(model, adapter, ["language"], [], flop_input, "magnitude", 0.01)
    assert outcome.status == "unreachable"
    assert outcome.achieved_scope_flops_ratio is not None and outcome.achieved_scope_flops_ratio > 0.03
    assert outcome.reason is not None and "closest reachable" in outcome.reason
    assert len(outcome.details["tries"]) <= 8


def test_failures_are_reported_not_raised() -> None:
    model = tiny_bert()
    adapter = adapter_for("bert")
    flop_input = {key: value[:1] for key, value in sample_inputs(model, batch=1).items()}
    outcome = prune_with_torch_pruning(model, adapter, ["vision"], [], flop_input, "magnitude", 0.6)
    assert outcome.status == "failed" and outcome.model is None
    assert outcome.reason is not None and "holds no attention or FFN block" in outcome.reason
    broken = dict(flop_input, input_ids=torch.full_like(flop_input["input_ids"], 10_000))  # out of vocabulary
    outcome = prune_with_torch_pruning(model, adapter, ["language"], [], broken, "magnitude", 0.6)
    assert outcome.status == "failed" and outcome.reason is not None and "IndexError" in outcome.reason
