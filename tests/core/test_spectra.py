"""eRank and KS against a plain numpy reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from infoprune_core.spectra import effective_rank, ks_distance, singular_values_from_gram, truncation_ks


def numpy_erank(matrix: np.ndarray) -> float:
    s = np.linalg.svd(matrix, compute_uv=False)
    p = s / s.sum()
    p = p[p > 0]
    return float(np.exp(-(p * np.log(p)).sum()))


def numpy_ks(a: np.ndarray, b: np.ndarray) -> float:
    length = max(len(a), len(b))
    fa = np.cumsum(np.sort(a)[::-1]) / a.sum()
    fb = np.cumsum(np.sort(b)[::-1]) / b.sum()
    fa = np.concatenate([fa, np.full(length - len(fa), fa[-1])])
    fb = np.concatenate([fb, np.full(length - len(fb), fb[-1])])
    return float(np.abs(fa - fb).max())


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_erank_matches_numpy_from_gram(seed: int) -> None:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(50, 16)) @ np.diag(np.linspace(3, 0.1, 16))
    gram = torch.from_numpy(x.T @ x)
    ours = float(effective_rank(singular_values_from_gram(gram)))
    assert ours == pytest.approx(numpy_erank(x), rel=1e-6)


def test_erank_limits() -> None:
    assert float(effective_rank(torch.tensor([5.0, 0, 0, 0]))) == pytest.approx(1.0)
    assert float(effective_rank(torch.ones(8))) == pytest.approx(8.0)


@pytest.mark.parametrize("seed", [0, 1])
def test_ks_matches_numpy(seed: int) -> None:
    rng = np.random.default_rng(seed)
    a, b = rng.random(12), rng.random(9)
    assert float(ks_distance(torch.from_numpy(a), torch.from_numpy(b))) == pytest.approx(numpy_ks(a, b))


def test_ks_of_truncation_is_lost_energy() -> None:
    s = torch.tensor([4.0, 3.0, 2.0, 1.0])
    for rank in range(1, 5):
        truncated = s.clone()
        truncated[rank:] = 0
        expected = 1 - float(s[:rank].sum() / s.sum())
        assert float(ks_distance(s, truncated, scale_aware=True)) == pytest.approx(expected)
        assert float(truncation_ks(s)[rank - 1]) == pytest.approx(expected)
