"""Streaming calibration statistics gathered by hooks in one pass over the calibration set.

Memory depends on the model's widths, never on the number of samples: per attention site the
Gram matrix of the concatenated head outputs and running per-head eRank sums; per FFN the input
covariance of its input linears and of its output linear, and the mean intermediate activation.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

import torch
from torch import nn

from infoprune_core.adapters.base import AttentionSite, FFNSite
from infoprune_core.spectra import effective_rank, singular_values_from_gram

ACCUMULATE = torch.float64


@dataclass
class AttentionStats:
    gram: torch.Tensor  # [H*d, H*d], sum over valid tokens of x^T x, x = concatenated head outputs
    erank_sum: torch.Tensor  # [H], sum over samples of each head's eRank
    samples: int = 0
    tokens: int = 0

    @property
    def erank(self) -> torch.Tensor:
        return self.erank_sum / max(self.samples, 1)

    @classmethod
    def empty(cls, site: AttentionSite, device: torch.device | str) -> AttentionStats:
        width = site.num_heads * site.head_dim
        return cls(
            gram=torch.zeros(width, width, dtype=ACCUMULATE, device=device),
            erank_sum=torch.zeros(site.num_heads, dtype=ACCUMULATE, device=device),
        )

    def add(self, site: AttentionSite, x: torch.Tensor, mask: torch.Tensor) -> None:
        """Add a batch of head outputs x ([B, T, H*d]) whose valid tokens are `mask` ([B, T])."""
        rows = x.float() * mask[..., None]  # float32 products per batch, float64 running sums
        self.gram += torch.einsum("btc,btd->cd", rows, rows).to(ACCUMULATE)
        heads = rows.unflatten(-1, (site.num_heads, site.head_dim))  # [B, T, H, d]
        per_sample = torch.einsum("bthc,bthd->bhcd", heads, heads).to(ACCUMULATE)  # [B, H, d, d]
        self.erank_sum += effective_rank(singular_values_from_gram(per_sample)).sum(0)
        self.samples += x.shape[0]
        self.tokens += int(mask.sum())


@dataclass
class CovarianceStats:
    gram: torch.Tensor  # [in, in]
    total: torch.Tensor  # [in], sum of inputs (for the mean)
    tokens: int = 0

    @property
    def covariance(self) -> torch.Tensor:
        """Second moment E[x x^T] (not centred: it whitens a linear map including its mean)."""
        return self.gram / max(self.tokens, 1)

    @property
    def mean(self) -> torch.Tensor:
        return self.total / max(self.tokens, 1)


@dataclass
class CalibrationStats:
    attention: dict[str, AttentionStats] = field(default_factory=dict)  # by site name
    ffn_input: dict[str, CovarianceStats] = field(default_factory=dict)  # by FFN site name
    ffn_hidden: dict[str, CovarianceStats] = field(default_factory=dict)  # input of the output linear


def valid_rows(x: torch.Tensor, token_mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """x as [B, T, C] and a boolean [B, T] mask of the tokens that count."""
    x = x.detach()
    if x.dim() == 2:
        x = x.unsqueeze(0)
    x = x.reshape(x.shape[0], -1, x.shape[-1])
    if token_mask is not None and token_mask.shape == x.shape[:2]:
        return x, token_mask.bool()
    return x, torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)


def _accumulate(stats: CovarianceStats, x: torch.Tensor, mask: torch.Tensor) -> None:
    # One batch's product in float32 (a few thousand tokens at most), the running sums in float64:
    # about twice as fast as a float64 product, with the long sums still exact enough.
    rows = x[mask].float()
    stats.gram += (rows.T @ rows).to(ACCUMULATE)
    stats.total += rows.sum(0).to(ACCUMULATE)
    stats.tokens += rows.shape[0]


class StatisticsCollector:
    """Installs hooks, then `observe(batch)` runs the model and accumulates statistics."""

    def __init__(
        self,
        model: nn.Module,
        attention_sites: Iterable[AttentionSite],
        ffn_sites: Iterable[FFNSite],
        masked_parts: Iterable[str] = ("language",),
    ) -> None:
        self.model = model
        self.stats = CalibrationStats()
        self.masked_parts = set(masked_parts)
        self._token_mask: torch.Tensor | None = None
        self._handles: list[torch.utils.hooks.RemovableHandle] = []
        for site in attention_sites:
            self._hook(site.o, self._on_attention(site))
        for ffn in ffn_sites:
            self._hook(ffn.inputs[0], self._on_covariance(self.stats.ffn_input, ffn.name, ffn.part))
            self._hook(ffn.output, self._on_covariance(self.stats.ffn_hidden, ffn.name, ffn.part))

    def _hook(self, path: str, function: Callable[[torch.Tensor], None]) -> None:
        def pre_hook(_: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
            function(args[0])

        self._handles.append(self.model.get_submodule(path).register_forward_pre_hook(pre_hook))

    def _mask_for(self, part: str) -> torch.Tensor | None:
        return self._token_mask if part in self.masked_parts else None

    def _on_attention(self, site: AttentionSite) -> Callable[[torch.Tensor], None]:
        def observe(x: torch.Tensor) -> None:
            x, mask = valid_rows(x, self._mask_for(site.part))
            stats = self.stats.attention.get(site.name)
            if stats is None:
                stats = self.stats.attention[site.name] = AttentionStats.empty(site, x.device)
            stats.add(site, x, mask)

        return observe

    def _on_covariance(self, table: dict[str, CovarianceStats], key: str, part: str) -> Callable[[torch.Tensor], None]:
        def observe(x: torch.Tensor) -> None:
            x, mask = valid_rows(x, self._mask_for(part))
            stats = table.get(key)
            if stats is None:
                width = x.shape[-1]
                stats = CovarianceStats(
                    gram=torch.zeros(width, width, dtype=ACCUMULATE, device=x.device),
                    total=torch.zeros(width, dtype=ACCUMULATE, device=x.device),
                )
                table[key] = stats
            _accumulate(stats, x, mask)

        return observe

    def observe(self, batch: Mapping[str, torch.Tensor]) -> None:
        self._token_mask = batch.get("attention_mask")
        with torch.no_grad():
            self.model(**batch)

    def close(self) -> CalibrationStats:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        return self.stats
