"""Head criteria behind one registry, and GQA-safe head removal within a planned shape."""

from __future__ import annotations

import itertools
import typing

import pytest
import torch

from infoprune_core import engine
from infoprune_core.config import CompressionConfig, HeadMethod
from infoprune_core.heads import HEAD_METHODS, head_method
from infoprune_core.heads.base import HeadImportance
from infoprune_core.heads.selection import HeadRemoval
from infoprune_core.modeling import adapter_for_config, load_model
from infoprune_core.pipeline import engine_settings
from infoprune_core.plan.budget import Budget, plan_for_budget
from infoprune_core.plan.flops import AttentionCost, count_flops
from infoprune_core.plan.types import AttentionShape
from infoprune_core.reconstruction import RemovalPath
from infoprune_core.run import prepare_data, scope_stacks, scope_total
from infoprune_core.surgery import kv_heads_for
from tests.core.tiny_models import tiny_llama


def test_every_configurable_head_method_is_registered() -> None:
    assert set(typing.get_args(HeadMethod)) == set(HEAD_METHODS)
    for name in HEAD_METHODS:
        assert head_method(name).name == name
    with pytest.raises(ValueError, match="unknown head method"):
        head_method("nope")


class LowIndexFirst(HeadImportance):
    """A criterion written as one class: keep the heads with the lowest indices."""

    name = "low_index_first"

    def block_scores(self, site, statistics, o_weight):  # type: ignore[no-untyped-def]
        return -torch.arange(site.num_heads, dtype=torch.float32)


def test_a_new_criterion_plugs_in_as_one_class(model_dirs) -> None:
    config = CompressionConfig(head_keep_ratio=0.5, ffn="none", calibration_samples=8, held_out_samples=2)
    loaded = load_model(model_dirs["bert"])
    data = prepare_data(config, loaded)
    stacks = scope_stacks(loaded.adapter, loaded.model, config.scope)
    counts = count_flops(loaded.model, loaded.adapter.attention_sites(loaded.model), data.flop_input)
    costs = engine.Costs.of(loaded.model, stacks, counts)
    settings = engine_settings(config)
    paths = engine.measure_paths(loaded.model, stacks, data.calibration, costs, settings, lambda *_: None)
    scope = scope_total(counts.by_part(loaded.adapter, loaded.model), config.scope)
    plan = plan_for_budget(paths, Budget(scope, head_keep_ratio=0.5))
    report = engine.walk(
        loaded.model, stacks, plan, data.calibration, LowIndexFirst(), costs, settings, (lambda *_: None,) * 2
    )
    assert report.kept_heads, "the plan cuts heads"
    for kept in report.kept_heads.values():
        assert kept == list(range(len(kept)))


def _removal(scores: torch.Tensor | None = None) -> HeadRemoval:
    model = tiny_llama()
    site = adapter_for_config(model.config.to_dict()).attention_sites(model)[0]
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(200, site.num_heads * site.head_dim, generator=generator, dtype=torch.float64)
    weight = model.get_submodule(site.o).weight.detach()
    cost = AttentionCost(tokens=10, sequence=10, hidden=weight.shape[0], head_dim=site.head_dim)
    return HeadRemoval(site, RemovalPath(weight, x.T @ x, 0.1), cost, scores)


@pytest.mark.parametrize("target", [(2, 2), (2, 1), (1, 3), (1, 1)])
def test_removal_reaches_any_gqa_shape_and_stays_expressible(target: tuple[int, int]) -> None:
    removal = _removal()  # 6 query heads in 2 KV groups of 3
    kept = removal.reach(AttentionShape(*target))
    assert len(kept) == target[0] * target[1]
    assert len(kv_heads_for(removal.site, kept)) == target[0]


def test_static_scores_remove_the_lowest_heads() -> None:
    scores = torch.tensor([5.0, 1.0, 4.0, 6.0, 2.0, 3.0])
    kept = _removal(scores).reach(AttentionShape(2, 2))
    assert kept == [0, 2, 3, 5]  # the lowest of each group (1 in group 0, 4 in group 1) went


def test_path_points_remove_more_flops_at_growing_error() -> None:
    points = _removal().path_points()
    assert points[0].flops_removed == 0 and points[-1].shape == AttentionShape(1, 1)
    assert all(b.flops_removed > a.flops_removed for a, b in itertools.pairwise(points))
    assert all(b.error >= a.error for a, b in itertools.pairwise(points))
