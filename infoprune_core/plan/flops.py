"""Analytic FLOP counting from shapes seen on one stated input.

One forward pass with hooks records how many tokens reach every linear and convolution and how long
each attention sequence is; FLOPs then follow from shapes (a multiply-add counts 2). The same token
counts let the planner predict the FLOPs of a candidate structure without running it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import torch
from torch import nn

from infoprune_core.adapters.base import AttentionSite, FFNSite, ModelAdapter

PARTS = ("vision", "projector", "language")


@dataclass
class FlopCount:
    """FLOPs per module path (linears, convolutions) and per attention site (QK^T and AV products)."""

    modules: dict[str, float] = field(default_factory=dict)
    attention_core: dict[str, float] = field(default_factory=dict)
    tokens: dict[str, int] = field(default_factory=dict)  # tokens reaching each linear
    sequence: dict[str, int] = field(default_factory=dict)  # sequence length at each attention site

    def by_part(self, adapter: ModelAdapter, model: nn.Module, core: bool = True) -> dict[str, float]:
        """FLOPs per part; without `core`, linears and convolutions only (what torch's own counter
        counts of a CPU model whose attention runs through scaled_dot_product_attention)."""
        totals = dict.fromkeys(PARTS, 0.0)
        for name, flops in (*self.modules.items(), *(self.attention_core.items() if core else ())):
            totals[adapter.part_of(model, name)] += flops
        return totals

    @property
    def total(self) -> float:
        return sum(self.modules.values()) + sum(self.attention_core.values())


def attention_core_flops(sequence: int, num_heads: int, head_dim: int) -> float:
    """QK^T and AV for one sequence: 2 products of T x T x (H*d) multiply-adds."""
    return 4.0 * sequence * sequence * num_heads * head_dim


def count_flops(model: nn.Module, sites: list[AttentionSite], inputs: Mapping[str, torch.Tensor]) -> FlopCount:
    """Run `model(**inputs)` once (batch 1) and count FLOPs from the shapes that flow."""
    count = FlopCount()
    q_paths = {site.q: site for site in sites}
    handles = []

    def on_linear(name: str):
        def hook(module: nn.Linear, args: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
            tokens = output.numel() // module.out_features
            count.tokens[name] = count.tokens.get(name, 0) + tokens
            count.modules[name] = count.modules.get(name, 0.0) + 2.0 * tokens * module.in_features * (
                module.out_features
            )
            site = q_paths.get(name)
            if site is not None:
                sequence = output.shape[-2]
                count.sequence[site.name] = sequence
                count.attention_core[site.name] = count.attention_core.get(site.name, 0.0) + (
                    output.numel() // (sequence * module.out_features)
                ) * attention_core_flops(sequence, site.num_heads, site.head_dim)

        return hook

    def on_conv(name: str):
        def hook(module: nn.Conv2d | nn.Conv3d, args: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
            kernel = math.prod(module.kernel_size) * module.in_channels // module.groups
            count.modules[name] = count.modules.get(name, 0.0) + 2.0 * output.numel() * kernel

        return hook

    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            handles.append(module.register_forward_hook(on_linear(name)))
        elif isinstance(module, nn.Conv2d | nn.Conv3d):
            handles.append(module.register_forward_hook(on_conv(name)))
        elif isinstance(module, nn.MultiheadAttention):  # its input projection is a parameter, not a Linear
            handles.append(module.register_forward_hook(_on_multihead(count, name), with_kwargs=True))
    try:
        with torch.no_grad():
            model(**inputs)
    finally:
        for handle in handles:
            handle.remove()
    return count


def _on_multihead(count: FlopCount, name: str):
    """nn.MultiheadAttention's projections and products (its forward never calls out_proj as a module)."""

    def hook(module: nn.MultiheadAttention, args: tuple, kwargs: dict, output: object) -> None:
        query, key = (*args, None, None)[:2]
        query, key = kwargs.get("query", query), kwargs.get("key", key)
        width = module.embed_dim
        batch = query.shape[0] if module.batch_first else query.shape[1]
        q_len, k_len = query.numel() // (batch * width), key.numel() // (batch * module.kdim)
        projection = 2.0 * batch * width * (2 * q_len * width + k_len * (module.kdim + module.vdim))
        core = 4.0 * batch * q_len * k_len * width
        count.modules[name] = count.modules.get(name, 0.0) + projection + core

    return hook


def parameter_count_by_part(model: nn.Module, adapter: ModelAdapter) -> dict[str, int]:
    totals = dict.fromkeys(PARTS, 0)
    for name, parameter in model.named_parameters():
        totals[adapter.part_of(model, name.rpartition(".")[0])] += parameter.numel()
    return totals


@dataclass(frozen=True)
class AttentionCost:
    """FLOPs of one attention block as a function of its head layout, on the stated input."""

    tokens: int  # tokens reaching the projections
    sequence: int  # attention sequence length
    hidden: int  # width of the residual stream (input of q/k/v, output of o)
    head_dim: int

    @classmethod
    def of(cls, site: AttentionSite, counts: FlopCount, hidden: int) -> AttentionCost:
        return cls(counts.tokens.get(site.q, 0), counts.sequence.get(site.name, 0), hidden, site.head_dim)

    def flops(self, query_heads: int, kv_heads: int) -> float:
        """q and o for the query heads, k and v for the KV heads, QK^T and AV for the query heads."""
        projections = 2.0 * self.tokens * self.hidden * self.head_dim * (2 * query_heads + 2 * kv_heads)
        return projections + self.core(query_heads)

    def core(self, query_heads: int) -> float:
        """QK^T and AV of the query heads."""
        rows = self.tokens // max(self.sequence, 1)
        return rows * attention_core_flops(self.sequence, query_heads, self.head_dim)


@dataclass(frozen=True)
class FFNCost:
    """FLOPs of one FFN as a function of its width (channels between the input and output linears)."""

    tokens: int
    hidden: int
    matrices: int  # linears of width x hidden: 3 when gated (gate, up, down), else 2

    @classmethod
    def of(cls, site: FFNSite, counts: FlopCount, hidden: int) -> FFNCost:
        return cls(counts.tokens.get(site.output, 0), hidden, site.matrices)

    def flops(self, width: int) -> float:
        return 2.0 * self.tokens * self.hidden * width * self.matrices

    def linear_flops(self, out_features: int, in_features: int, rank: int | None = None) -> float:
        """One of the FFN's linears, dense or factorised at `rank` (in -> rank -> out)."""
        inner = in_features * out_features if rank is None else rank * (in_features + out_features)
        return 2.0 * self.tokens * inner
