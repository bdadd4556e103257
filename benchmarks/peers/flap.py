"""A FLAP-style baseline, written from the paper (An et al., "Fluctuation-based Adaptive Structured
Pruning for Large Language Models", AAAI 2024), at InfoPrune's FLOP budget.

* Fluctuation metric: for every input channel j of an output projection (o_proj / the FFN's down or
  fc2), the sample variance of x_j over the calibration tokens times ||W[:, j]||^2. A head scores the
  sum over its channels; with grouped-query attention the unit is a whole KV group (its query heads
  and its k/v head), the only cut that stays expressible without mixing criteria.
* Adaptive structure search across layers and modules ("AL-AM"): head scores are standardised over
  every head unit of the model, channel scores over every FFN channel of the model, and units are
  removed in one global order of the standardised scores until the scope's FLOPs (counted as
  InfoPrune counts them) reach the target. Every attention keeps one unit, every FFN 1/16 of its width.
* Baseline bias compensation: the output projection's bias gains W[:, S] E[x_S] for the removed
  channels S (a bias is added where the layer had none). No other weight is re-fitted.

Statistics come from one pass of the original model over the calibration batches (padding excluded).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from infoprune_core.adapters.base import ModelAdapter
from infoprune_core.calibration.walk import observing
from infoprune_core.engine import Costs
from infoprune_core.errors import BudgetError
from infoprune_core.ffn.width import min_width
from infoprune_core.plan.flops import count_flops
from infoprune_core.surgery import get_linear, head_rows, prune_ffn_width, prune_heads

Batch = Mapping[str, torch.Tensor]


@dataclass
class ChannelMoments:
    total: torch.Tensor
    squares: torch.Tensor
    tokens: int = 0

    def add(self, x: torch.Tensor, valid: torch.Tensor | None) -> None:
        rows = x.reshape(-1, x.shape[-1]).double()
        if valid is not None:
            rows = rows[valid.reshape(-1).bool().to(rows.device)]
        self.total += rows.sum(0)
        self.squares += rows.pow(2).sum(0)
        self.tokens += rows.shape[0]

    @property
    def mean(self) -> torch.Tensor:
        return self.total / max(self.tokens, 1)

    @property
    def variance(self) -> torch.Tensor:
        return (self.squares / max(self.tokens, 1) - self.mean.pow(2)).clamp_min(0)


@dataclass(frozen=True)
class _Unit:
    block: str
    kind: str  # "heads" or "channel"
    members: tuple[int, ...]  # query heads of a unit, or one channel
    score: float
    flops: float


def _channel_moments(model: nn.Module, paths: Sequence[str], batches: Sequence[Batch]) -> dict[str, ChannelMoments]:
    moments = {
        path: ChannelMoments(
            torch.zeros(get_linear(model, path).in_features, dtype=torch.float64),
            torch.zeros(get_linear(model, path).in_features, dtype=torch.float64),
        )
        for path in paths
    }
    mask: torch.Tensor | None = None

    def observer(path: str):
        def observe(x: torch.Tensor) -> None:
            valid = mask if mask is not None and mask.shape == x.shape[:2] else None
            moments[path].add(x, valid)

        return observe

    with ExitStack() as hooks, torch.no_grad():
        for path in paths:
            hooks.enter_context(observing(model.get_submodule(path), observer(path)))
        for batch in batches:
            mask = batch.get("attention_mask")
            model(**batch)
    return moments


def _standardised(units: list[_Unit]) -> list[_Unit]:
    if not units:
        return units
    scores = torch.tensor([u.score for u in units], dtype=torch.float64)
    z = (scores - scores.mean()) / scores.std().clamp_min(1e-30)
    return [_Unit(u.block, u.kind, u.members, float(s), u.flops) for u, s in zip(units, z, strict=True)]


def _with_bias(model: nn.Module, path: str) -> nn.Linear:
    linear = get_linear(model, path)
    if linear.bias is not None:
        return linear
    new = nn.Linear(linear.in_features, linear.out_features, bias=True, dtype=linear.weight.dtype)
    with torch.no_grad():
        new.weight.copy_(linear.weight)
        new.bias.zero_()
    model.set_submodule(path, new)
    return new


def prune_with_flap(
    model: nn.Module,
    adapter: ModelAdapter,
    scope: Sequence[str],
    batches: Sequence[Batch],
    flop_input: Batch,
    target_ratio: float,
) -> dict[str, Any]:
    """Prune `model` in place to `target_ratio` of the scope's FLOPs; returns what was removed."""
    stacks = [stack for stack in adapter.stacks(model) if stack.part in scope]
    blocks = [block for stack in stacks for block in stack.blocks]
    counts = count_flops(model, adapter.attention_sites(model), flop_input)
    scope_flops = sum(v for part, v in counts.by_part(adapter, model).items() if part in scope)
    costs = Costs.of(model, stacks, counts)
    paths = [b.attention.o for b in blocks if b.attention] + [b.ffn.output for b in blocks if b.ffn]
    moments = _channel_moments(model, paths, batches)
    heads: list[_Unit] = []
    channels: list[_Unit] = []
    for block in blocks:
        site, ffn = block.attention, block.ffn
        if site is not None:
            weight = get_linear(model, site.o).weight.detach().double()
            per_channel = moments[site.o].variance * weight.pow(2).sum(0)
            per_head = per_channel.view(site.num_heads, site.head_dim).sum(1)
            cost = costs.attention[block.name]
            full = cost.flops(site.num_heads, site.num_kv_heads)
            unit_flops = full - cost.flops(site.num_heads - site.group_size, site.num_kv_heads - 1)
            for group in range(site.num_kv_heads):
                members = tuple(range(group * site.group_size, (group + 1) * site.group_size))
                heads.append(_Unit(block.name, "heads", members, float(per_head[list(members)].sum()), unit_flops))
        if ffn is not None:
            weight = get_linear(model, ffn.output).weight.detach().double()
            per_channel = moments[ffn.output].variance * weight.pow(2).sum(0)
            channel_flops = costs.ffn[block.name].flops(1)
            channels.extend(
                _Unit(block.name, "channel", (j,), float(v), channel_flops) for j, v in enumerate(per_channel)
            )
    needed = (1 - target_ratio) * scope_flops
    removed: dict[tuple[str, str], list[int]] = {}
    limits = {(b.name, "heads"): b.attention.num_kv_heads - 1 for b in blocks if b.attention}
    limits |= {
        (b.name, "channel"): get_linear(model, b.ffn.output).in_features
        - min_width(get_linear(model, b.ffn.output).in_features)
        for b in blocks
        if b.ffn
    }
    done = 0.0
    for unit in sorted(_standardised(heads) + _standardised(channels), key=lambda u: u.score):
        if done >= needed:
            break
        key = (unit.block, unit.kind)
        taken = removed.setdefault(key, [])
        if len(taken) < limits[key]:
            taken.extend(unit.members)
            done += unit.flops
    if done < needed:
        raise BudgetError(f"FLAP can remove at most {done / scope_flops:.3f} of the scope's FLOPs here")
    for block in blocks:
        site, ffn = block.attention, block.ffn
        gone_heads = removed.get((block.name, "heads"), [])
        if site is not None and gone_heads:
            kept = [h for h in range(site.num_heads) if h not in set(gone_heads)]
            o_linear = get_linear(model, site.o)
            columns = head_rows(sorted(gone_heads), site.head_dim)
            shift = o_linear.weight.detach()[:, columns].double() @ moments[site.o].mean[columns]
            prune_heads(model, site, kept)
            with torch.no_grad():
                _with_bias(model, site.o).bias.add_(shift.float())
        gone = removed.get((block.name, "channel"), [])
        if ffn is not None and gone:
            _with_bias(model, ffn.output)
            kept = sorted(set(range(get_linear(model, ffn.output).in_features)) - set(gone))
            prune_ffn_width(model, ffn, kept, moments[ffn.output].mean.float())
    return {
        "heads_removed": {k[0]: sorted(v) for k, v in removed.items() if k[1] == "heads"},
        "channels_removed": {k[0]: sorted(v) for k, v in removed.items() if k[1] == "channel"},
        "planned_scope_ratio": 1 - done / scope_flops,
    }
