"""Second moments of one linear's inputs over calibration tokens: what a re-fit and a removal path need.

Sums are float64, each batch's product float32 (a few thousand tokens at most). Tokens can carry
weights: with relative weighting a token counts 1 / (its residual-stream energy per feature), so the
re-fit error of a block reads as an error relative to the stream it is added to, comparable across
blocks and not dominated by the few tokens with huge activations that decoders keep.
"""

from __future__ import annotations

import torch

ACCUMULATE = torch.float64


class InputMoments:
    """sum_t w_t [x_t, 1] [x_t, 1]^T of a linear's inputs (the constant column when `bias`), and
    optionally the cross moment sum_t w_t [x_t, 1] [x'_t, 1]^T with the original model's inputs x'."""

    def __init__(self, features: int, bias: bool, cross: bool = False, device: torch.device | str = "cpu") -> None:
        size = features + int(bias)
        self.features = features
        self.bias = bias
        self.gram = torch.zeros(size, size, dtype=ACCUMULATE, device=device)
        self.cross = torch.zeros(size, size, dtype=ACCUMULATE, device=device) if cross else None
        self.tokens = 0

    def _rows(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, x.shape[-1]).float()
        if self.bias:
            rows = torch.cat([rows, torch.ones(rows.shape[0], 1, dtype=rows.dtype, device=rows.device)], 1)
        return rows

    def add(self, x: torch.Tensor, weights: torch.Tensor, original: torch.Tensor | None = None) -> None:
        """Add the tokens `x` ([..., features]) with `weights` ([...], 0 for tokens that do not count)."""
        rows = self._rows(x)
        weighted = rows * weights.reshape(-1, 1).to(rows.dtype)
        self.gram += (weighted.T @ rows).to(self.gram.device, ACCUMULATE)
        if self.cross is not None:
            if original is None:
                raise ValueError("cross moments need the original model's inputs")
            self.cross += (weighted.T @ self._rows(original)).to(self.cross.device, ACCUMULATE)
        self.tokens += int((weights > 0).sum())

    @property
    def mean(self) -> torch.Tensor:
        """Weighted mean input (needs the constant column)."""
        if not self.bias:
            raise ValueError("the mean needs the constant column")
        return self.gram[-1, : self.features] / self.gram[-1, -1].clamp_min(1e-12)


def token_weights(stream: torch.Tensor, mask: torch.Tensor | None, relative: bool) -> torch.Tensor:
    """Per-token weights (stream.shape[:-1]) from the residual stream entering the block ([..., C])."""
    stream = stream.float()
    valid = torch.ones(stream.shape[:-1], dtype=stream.dtype) if mask is None else mask.to(stream.dtype)
    valid = valid.to(stream.device)
    if not relative:
        return valid
    energy = stream.pow(2).mean(-1).clamp_min(1e-12)
    return valid / energy


def stream_energy(stream: torch.Tensor, weights: torch.Tensor) -> float:
    """sum_t w_t ||x_t||^2 over the stream's tokens: what block errors are divided by."""
    return float((stream.float().pow(2).sum(-1) * weights).sum())
