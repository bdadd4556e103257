"""Structural edits of a model: head masks, physical head removal, FFN width pruning, low-rank FFNs.

Every edit here is expressible as a small record (kept head indices, kept width, rank) so that
`artifacts.load_compressed` can replay it on a freshly built model before loading the weights.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from infoprune_core.adapters.base import AttentionSite, FFNSite

HEAD_COUNT_ATTRIBUTES = ("num_heads", "num_attention_heads")


class LowRankLinear(nn.Module):
    """y = up(down(x)): a rank-r factorisation of an in->out linear (bias on the second factor)."""

    def __init__(self, in_features: int, rank: int, out_features: int, bias: bool) -> None:
        super().__init__()
        self.down = nn.Linear(in_features, rank, bias=False)
        self.up = nn.Linear(rank, out_features, bias=bias)

    @property
    def in_features(self) -> int:
        return self.down.in_features

    @property
    def out_features(self) -> int:
        return self.up.out_features

    @property
    def rank(self) -> int:
        return self.down.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(self.down(x))


def get_linear(model: nn.Module, path: str) -> nn.Linear:
    module = model.get_submodule(path)
    if not isinstance(module, nn.Linear):
        raise TypeError(f"{path} is a {type(module).__name__}, expected nn.Linear")
    return module


def slice_linear(
    linear: nn.Linear, out_index: torch.Tensor | None = None, in_index: torch.Tensor | None = None
) -> nn.Linear:
    """A new linear keeping the given output rows and/or input columns of `linear`."""
    weight = linear.weight.detach()
    if out_index is not None:
        weight = weight[out_index]
    if in_index is not None:
        weight = weight[:, in_index]
    bias = None if linear.bias is None else linear.bias.detach()
    if bias is not None and out_index is not None:
        bias = bias[out_index]
    new = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None, device=weight.device, dtype=weight.dtype)
    with torch.no_grad():
        new.weight.copy_(weight)
        if bias is not None:
            new.bias.copy_(bias)
    return new


def head_rows(heads: Sequence[int], head_dim: int) -> torch.Tensor:
    """Row indices (of q/k/v) or column indices (of o) covering the given heads."""
    return (
        torch.cat([torch.arange(h * head_dim, (h + 1) * head_dim) for h in heads])
        if heads
        else (torch.zeros(0, dtype=torch.long))
    )


def kv_heads_for(site: AttentionSite, kept: Sequence[int]) -> list[int]:
    """KV heads still needed by the kept query heads; checks the grouped-query layout stays uniform."""
    if not kept:
        raise ValueError(f"{site.name}: at least one head must stay")
    if len(set(kept)) != len(kept) or min(kept) < 0 or max(kept) >= site.num_heads:
        raise ValueError(f"{site.name}: invalid head indices {list(kept)} (layer has {site.num_heads})")
    per_group: dict[int, int] = {}
    for head in kept:
        group = head // site.group_size
        per_group[group] = per_group.get(group, 0) + 1
    if len(set(per_group.values())) != 1:
        raise ValueError(
            f"{site.name}: grouped-query attention needs the same number of kept query heads in every kept "
            f"KV group, got {per_group}"
        )
    return sorted(per_group)


def prune_heads(model: nn.Module, site: AttentionSite, kept: Sequence[int]) -> AttentionSite:
    """Physically remove the heads of `site` not in `kept`: rows of q/k/v, columns of o."""
    kept = sorted(kept)
    kv_kept = kv_heads_for(site, kept)
    q_rows = head_rows(kept, site.head_dim)
    kv_rows = head_rows(kv_kept, site.head_dim)
    if site.fused:
        queries, keys = site.num_heads * site.head_dim, site.num_kv_heads * site.head_dim
        rows = torch.cat([q_rows, queries + kv_rows, queries + keys + kv_rows])
        model.set_submodule(site.q, slice_linear(get_linear(model, site.q), out_index=rows))
    else:
        model.set_submodule(site.q, slice_linear(get_linear(model, site.q), out_index=q_rows))
        model.set_submodule(site.k, slice_linear(get_linear(model, site.k), out_index=kv_rows))
        model.set_submodule(site.v, slice_linear(get_linear(model, site.v), out_index=kv_rows))
    model.set_submodule(site.o, slice_linear(get_linear(model, site.o), in_index=q_rows))
    new_heads, new_kv = len(kept), len(kv_kept)
    if site.config_head_counts:
        # The module's config is shared by every layer: give this one its own copy with its counts.
        module = model.get_submodule(site.name)
        own: Any = copy.copy(module.config)
        own.num_attention_heads, own.num_key_value_heads = new_heads, new_kv
        module.config = own
    for holder in {model.get_submodule(site.name), model.get_submodule(site.q.rpartition(".")[0])}:
        for attribute in HEAD_COUNT_ATTRIBUTES:
            if hasattr(holder, attribute):
                setattr(holder, attribute, new_heads)
        updates = {
            "num_key_value_heads": new_kv,
            "num_key_value_groups": new_heads // new_kv,
            "all_head_size": new_heads * site.head_dim,
        }
        for attribute, value in updates.items():
            if hasattr(holder, attribute):
                setattr(holder, attribute, value)
    return AttentionSite(
        name=site.name,
        part=site.part,
        q=site.q,
        k=site.k,
        v=site.v,
        o=site.o,
        num_heads=new_heads,
        num_kv_heads=new_kv,
        head_dim=site.head_dim,
        config_head_counts=site.config_head_counts,
    )


@contextmanager
def head_masks(model: nn.Module, masks: Mapping[str, torch.Tensor]) -> Iterator[None]:
    """Multiply each head's output (the input of o, per head) by `masks[site.o]` while inside.

    `masks` maps the o-projection path to a tensor of shape [num_heads]; it may require grad.
    """
    handles = []
    for o_path, mask in masks.items():

        def scale(_: nn.Module, args: tuple[torch.Tensor, ...], mask: torch.Tensor = mask) -> tuple:
            x = args[0]
            heads = mask.shape[0]
            shaped = x.unflatten(-1, (heads, x.shape[-1] // heads)) * mask.to(x.dtype)[:, None]
            return (shaped.flatten(-2), *args[1:])

        handles.append(model.get_submodule(o_path).register_forward_pre_hook(scale))
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def prune_ffn_width(
    model: nn.Module, site: FFNSite, kept: Sequence[int], removed_mean: torch.Tensor | None = None
) -> None:
    """Keep only intermediate neurons `kept`; fold the mean contribution of removed ones into the bias.

    `removed_mean` is the calibration mean of the intermediate activation (all neurons); folding is
    skipped when the output linear has no bias.
    """
    index = torch.as_tensor(sorted(kept), dtype=torch.long)
    output = get_linear(model, site.output)
    rows = torch.cat([index + block * output.in_features for block in range(site.stacked)])
    new_output = slice_linear(output, in_index=index)
    if removed_mean is not None and output.bias is not None:
        removed = torch.ones(output.in_features, dtype=torch.bool)
        removed[index] = False
        with torch.no_grad():
            new_output.bias.add_(output.weight[:, removed] @ removed_mean[removed].to(output.weight.dtype))
    for path in site.inputs:
        model.set_submodule(path, slice_linear(get_linear(model, path), out_index=rows))
    model.set_submodule(site.output, new_output)


def factorise_linear(model: nn.Module, path: str, down: torch.Tensor, up: torch.Tensor) -> LowRankLinear:
    """Replace the linear at `path` (W ~ up @ down) by a LowRankLinear; the bias moves to `up`."""
    linear = get_linear(model, path)
    rank = down.shape[0]
    low_rank = LowRankLinear(linear.in_features, rank, linear.out_features, bias=linear.bias is not None)
    low_rank.to(device=linear.weight.device, dtype=linear.weight.dtype)
    with torch.no_grad():
        low_rank.down.weight.copy_(down)
        low_rank.up.weight.copy_(up)
        if linear.bias is not None:
            low_rank.up.bias.copy_(linear.bias)
    model.set_submodule(path, low_rank)
    return low_rank


def augmented_weight(model: nn.Module, path: str) -> torch.Tensor:
    """[W, b] of a linear (W alone when it has no bias): what a re-fit with a bias column works on."""
    linear = get_linear(model, path)
    weight = linear.weight.detach()
    return weight if linear.bias is None else torch.cat([weight, linear.bias.detach()[:, None]], 1)


def write_augmented(model: nn.Module, path: str, augmented: torch.Tensor) -> None:
    """Set a linear's weight (and bias, the last column) from an augmented matrix of its shape."""
    linear = get_linear(model, path)
    with torch.no_grad():
        if linear.bias is not None:
            linear.weight.copy_(augmented[:, :-1])
            linear.bias.copy_(augmented[:, -1])
        else:
            linear.weight.copy_(augmented)
