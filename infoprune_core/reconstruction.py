"""Re-fitting what survives a cut, and the removal path that chooses the cut.

A linear y = W x (W: [out, n]) saw inputs x on calibration tokens, G = sum_t w_t x_t x_t^T (w_t a token
weight). Removing input columns S of W (a head: its head_dim columns of the output projection; an FFN
channel: a column of the down projection) and re-fitting the kept columns K by ridge least squares
toward the original weights,

    min_W'  sum_t w_t ||W x_t - W' x_t,K||^2 + lam ||W' - W_K||^2,      lam = ridge * mean(diag G),

has the solution W' = W H[:, K] H_KK^-1 with H = G + lam I. Removing columns a group at a time with the
optimal-brain-surgeon update of the kept ones reaches the same W' and gives, on the way, the error of
every prefix of the removal order (the curve the budget allocation needs). The ridge keeps the re-fit
close to the original weights, so that it transfers to inputs unlike the calibration set.

A trailing constant input (the bias column) is never removed: with it, the re-fit also moves the bias
and so compensates the mean of what was cut (as FLAP does).
"""

from __future__ import annotations

import torch

DTYPE = torch.float64


def damping(gram: torch.Tensor, ridge: float, features: int) -> float:
    """The ridge strength lam for a Gram matrix: `ridge` times the mean input energy of its features."""
    scale = float(gram.diagonal()[:features].mean().clamp_min(1e-12))
    return max(ridge, 1e-6) * scale


def _cholesky(gram: torch.Tensor, lam: float, index: torch.Tensor | None = None) -> torch.Tensor:
    """Cholesky factor of G + lam I (of its `index` rows and columns), with one working copy at a time."""
    regularised = (gram if index is None else gram[index[:, None], index]).to(DTYPE, copy=True)
    regularised.diagonal().add_(lam)
    factor, info = torch.linalg.cholesky_ex(regularised)
    if int(info) != 0:
        raise RuntimeError("the calibration Gram matrix is not positive definite even with the ridge")
    return factor


def kept_columns(columns: torch.Tensor, features: int, bias: bool) -> torch.Tensor:
    """Kept input columns, plus the constant (bias) column when there is one."""
    return torch.cat([columns, torch.tensor([features])]) if bias else columns


def ridge_refit(
    weight: torch.Tensor,
    gram: torch.Tensor,
    kept: torch.Tensor,
    ridge: float,
    features: int,
    cross: torch.Tensor | None = None,
) -> torch.Tensor:
    """Re-fitted weights for the `kept` input columns ([out, len(kept)]).

    Targets are the original weights on the same inputs, or, with `cross` = sum_t w_t x_t x'_t^T
    against the original model's inputs x', the original weights on those (the original stream).
    """
    lam = damping(gram, ridge, features)
    original = weight.to(DTYPE)
    moments = gram if cross is None else cross
    rhs = moments[kept].to(DTYPE) @ original.T + lam * original[:, kept].T  # [k, out]
    solution = torch.cholesky_solve(rhs, _cholesky(gram, lam, kept))
    return solution.T.to(weight.dtype)


class RemovalPath:
    """Greedy removal of groups of input columns of W, each followed by the OBS update of the rest.

    `protected` trailing columns (a bias column) are never removed. `error` is the regularised
    reconstruction error accumulated so far, in the units of the Gram matrix. The inverse and the
    weights are kept for the surviving columns only, so each step gets cheaper.
    """

    def __init__(self, weight: torch.Tensor, gram: torch.Tensor, ridge: float, protected: int = 0) -> None:
        size = gram.shape[0]
        features = size - protected
        lam = damping(gram, ridge, features)
        self.hinv = torch.cholesky_inverse(_cholesky(gram, lam))
        self.weight = weight.to(DTYPE).clone()  # [out, alive columns]
        self.columns = torch.arange(size, device=gram.device)  # original index of each alive column
        self.position = torch.arange(size, device=gram.device)  # original index -> position, -1 once removed
        self.features = features
        self.error = 0.0

    def _positions(self, columns: torch.Tensor) -> torch.Tensor:
        positions = self.position[columns.to(self.position.device)]
        if bool((positions < 0).any()) or bool((columns >= self.features).any()):
            raise ValueError("a column was removed twice or is protected")
        return positions

    def cost(self, columns: torch.Tensor) -> float:
        """Error added by removing `columns` together now: tr(W_S (Hinv_SS)^-1 W_S^T)."""
        positions = self._positions(columns)
        block = self.hinv[positions][:, positions]
        removed = self.weight[:, positions]
        return float((removed.T * torch.linalg.solve(block, removed.T)).sum())

    def column_costs(self) -> torch.Tensor:
        """Error of removing each original column alone now (inf for columns that cannot go)."""
        costs = torch.full((self.position.shape[0],), float("inf"), dtype=DTYPE, device=self.hinv.device)
        alive = self.weight.pow(2).sum(0) / self.hinv.diagonal().clamp_min(1e-30)
        removable = self.columns < self.features
        costs[self.columns[removable]] = alive[removable]
        return costs

    def remove(self, columns: torch.Tensor) -> float:
        """Remove `columns`, update the kept weights optimally; returns the error this step added."""
        positions = self._positions(columns)
        block = self.hinv[positions][:, positions]
        rows = self.hinv[positions]  # [s, m]
        coefficients = torch.linalg.solve(block, rows)  # (Hinv_SS)^-1 Hinv_S,:
        removed = self.weight[:, positions]
        added = float((removed.T * torch.linalg.solve(block, removed.T)).sum())
        self.weight.addmm_(removed, coefficients, alpha=-1)
        self.hinv.addmm_(rows.T, coefficients, alpha=-1)
        keep = torch.ones(self.columns.shape[0], dtype=torch.bool, device=self.hinv.device)
        keep[positions] = False
        index = keep.nonzero().squeeze(1)
        self.hinv = self.hinv[index[:, None], index]
        self.weight = self.weight[:, index]
        self.position[self.columns[positions]] = -1
        self.columns = self.columns[keep]
        self.position[self.columns] = torch.arange(self.columns.shape[0], device=self.position.device)
        self.error += added
        return added

    def kept_weight(self) -> torch.Tensor:
        """The re-fitted weights of the surviving columns, in their original order."""
        return self.weight
