"""The re-fit: ridge least squares toward the original weights, and the OBS removal path that reaches it."""

from __future__ import annotations

import torch

from infoprune_core.reconstruction import RemovalPath, damping, ridge_refit

DTYPE = torch.float64


def _problem(tokens: int = 400, features: int = 16, out: int = 5) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    mixing = torch.randn(features, features, generator=generator, dtype=DTYPE)
    x = torch.randn(tokens, features, generator=generator, dtype=DTYPE) @ mixing  # correlated inputs
    weight = torch.randn(out, features, generator=generator, dtype=DTYPE)
    return x, weight, x.T @ x


def test_removal_path_reaches_the_ridge_refit_and_its_error() -> None:
    x, weight, gram = _problem()
    removed = [2, 7, 11, 12]
    kept = torch.tensor([i for i in range(16) if i not in removed])
    refit = ridge_refit(weight, gram, kept, ridge=0.05, features=16)
    path = RemovalPath(weight, gram, ridge=0.05)
    path.remove(torch.tensor([2, 7]))
    path.remove(torch.tensor([11]))
    path.remove(torch.tensor([12]))
    torch.testing.assert_close(path.kept_weight(), refit)
    # The accumulated error is the regularised objective: data error plus the ridge on every change.
    lam = damping(gram, 0.05, 16)
    change = -weight.clone()
    change[:, kept] = refit - weight[:, kept]
    data_error = ((x @ weight.T - x[:, kept] @ refit.T) ** 2).sum()
    ridge_term = lam * (change**2).sum()
    torch.testing.assert_close(torch.tensor(path.error, dtype=DTYPE), data_error + ridge_term)


def test_refit_recovers_what_correlated_inputs_still_carry() -> None:
    """Columns 8-15 nearly copy columns 0-7: deleting them loses their share, the re-fit almost none."""
    x, weight, _ = _problem()
    noise = 0.01 * torch.randn(x.shape[0], 8, generator=torch.Generator().manual_seed(3), dtype=DTYPE)
    x[:, 8:] = x[:, :8] + noise
    kept = torch.arange(8)
    target = x @ weight.T
    deleted = ((target - x[:, kept] @ weight[:, kept].T) ** 2).sum()
    refitted = ((target - x[:, kept] @ ridge_refit(weight, x.T @ x, kept, 1e-6, 16).T) ** 2).sum()
    assert refitted < 0.01 * deleted


def test_ridge_pulls_the_refit_toward_the_original_weights() -> None:
    _, weight, gram = _problem()
    kept = torch.arange(10)
    strong = ridge_refit(weight, gram, kept, ridge=1e6, features=16)
    torch.testing.assert_close(strong, weight[:, kept], atol=1e-4, rtol=1e-4)
    weak = ridge_refit(weight, gram, kept, ridge=1e-9, features=16)
    # Without a ridge the re-fit solves the normal equations G_KK W'^T = G_K: W^T.
    torch.testing.assert_close(gram[kept][:, kept] @ weak.T, gram[kept] @ weight.T, atol=1e-3, rtol=1e-4)


def test_cross_moments_fit_the_original_stream() -> None:
    """With cross moments the re-fit targets the original weights applied to other (original) inputs."""
    x, weight, gram = _problem()
    shifted = x + 0.3 * torch.randn(x.shape, generator=torch.Generator().manual_seed(1), dtype=DTYPE)
    kept = torch.arange(12)
    refit = ridge_refit(weight, gram, kept, 1e-9, 16, cross=x.T @ shifted)
    best = torch.linalg.lstsq(x[:, kept], shifted @ weight.T).solution.T
    torch.testing.assert_close(refit, best, atol=1e-3, rtol=1e-3)


def test_bias_column_absorbs_the_mean_of_a_removed_constant_input() -> None:
    x, weight, _ = _problem()
    x[:, 3] = 2.5  # an input that never varies: removing it only moves the output's mean
    bias = torch.randn(5, dtype=DTYPE, generator=torch.Generator().manual_seed(2))
    rows = torch.cat([x, torch.ones(len(x), 1, dtype=DTYPE)], 1)
    augmented = torch.cat([weight, bias[:, None]], 1)
    kept = torch.tensor([i for i in range(17) if i != 3])  # the constant column 16 always stays
    refit = ridge_refit(augmented, rows.T @ rows, kept, 1e-9, 16)
    torch.testing.assert_close(refit[:, -1], bias + 2.5 * weight[:, 3], atol=1e-3, rtol=1e-3)
    path = RemovalPath(augmented, rows.T @ rows, 1e-9, protected=1)
    assert torch.isinf(path.column_costs()[16]), "the bias column is never a candidate"
