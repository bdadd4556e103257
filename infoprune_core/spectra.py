"""Spectral measures used by the method: effective rank and the KS distance between spectra."""

from __future__ import annotations

import torch


def singular_values_from_gram(gram: torch.Tensor) -> torch.Tensor:
    """Singular values of X (descending) from its Gram matrix X^T X: sqrt of the eigenvalues.

    Works on a batch of Gram matrices ([..., d, d]); tiny negative eigenvalues are clamped to 0.
    """
    eigenvalues = torch.linalg.eigvalsh(gram)  # ascending
    return eigenvalues.clamp_min(0).sqrt().flip(-1)


def effective_rank(singular_values: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """eRank = exp(entropy of s / sum(s)); 1 for rank one, d for a flat spectrum. Batched over [..., d]."""
    total = singular_values.sum(-1, keepdim=True)
    p = singular_values / total.clamp_min(eps)
    entropy = -(p * torch.log(p.clamp_min(eps))).sum(-1)
    return torch.where(total.squeeze(-1) > eps, entropy.exp(), torch.ones_like(entropy))


def cumulative_spectrum(singular_values: torch.Tensor, length: int, total: torch.Tensor | None = None) -> torch.Tensor:
    """Cumulative share of the sorted singular values, padded to `length` with its last value.

    Normalised by `total` when given (scale-aware comparison against a reference), else by its own sum.
    """
    s = singular_values.sort(descending=True).values
    denominator = s.sum() if total is None else total
    cdf = s.cumsum(0) / denominator.clamp_min(1e-12)
    if cdf.shape[0] < length:
        cdf = torch.cat([cdf, cdf[-1:].expand(length - cdf.shape[0])]) if cdf.numel() else torch.zeros(length)
    return cdf[:length]


def ks_distance(reference: torch.Tensor, other: torch.Tensor, scale_aware: bool = False) -> torch.Tensor:
    """Kolmogorov-Smirnov distance max_k |F_ref(k) - F_other(k)| between two spectra.

    With `scale_aware`, both are normalised by the reference's total so that lost energy counts; for a
    rank-r truncation both variants equal 1 - sum(s[:r]) / sum(s).
    """
    length = max(reference.shape[0], other.shape[0])
    total = reference.sum() if scale_aware else None
    return (cumulative_spectrum(reference, length, total) - cumulative_spectrum(other, length, total)).abs().max()


def truncation_ks(singular_values: torch.Tensor) -> torch.Tensor:
    """KS loss of keeping the top r singular values, for every r = 1..d: 1 - cumsum(s)/sum(s)."""
    s = singular_values.sort(descending=True).values
    return 1 - s.cumsum(0) / s.sum().clamp_min(1e-12)
