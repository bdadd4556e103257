"""The paper's criterion: S_h = (eRank_h / head_dim) x KS_h, from the block's head outputs.

eRank_h is the effective rank of head h's outputs (averaged over samples); KS_h is how far removing
head h alone moves the spectrum of the layer's attention output. The scale-aware variant (default)
measures that spectrum after the output projection and normalises both spectra by the unpruned total,
so a head carrying much energy moves it a lot; the paper's variant uses the concatenated head outputs,
each spectrum normalised by its own sum.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from infoprune_core.adapters.base import AttentionSite
from infoprune_core.calibration.statistics import AttentionStats
from infoprune_core.heads.base import HeadImportance, Scores, register
from infoprune_core.spectra import ks_distance, singular_values_from_gram
from infoprune_core.surgery import get_linear


def _drop_head(matrix: torch.Tensor, head: int, head_dim: int, dims: tuple[int, ...]) -> torch.Tensor:
    keep = torch.ones(matrix.shape[dims[0]], dtype=torch.bool)
    keep[head * head_dim : (head + 1) * head_dim] = False
    for dim in dims:
        matrix = matrix.index_select(dim, keep.nonzero().squeeze(1).to(matrix.device))
    return matrix


def _psd_sqrt(gram: torch.Tensor) -> torch.Tensor:
    eigenvalues, vectors = torch.linalg.eigh(gram)
    return (vectors * eigenvalues.clamp_min(0).sqrt()) @ vectors.T


def head_ks(site: AttentionSite, stats: AttentionStats, o_weight: torch.Tensor | None) -> torch.Tensor:
    """KS_h: how far removing head h alone moves the spectrum of the layer's attention output.

    With `o_weight` (the output projection) the spectrum is that of the layer output after o, and
    both spectra are normalised by the unpruned total (scale-aware: a head carrying much energy
    moves it a lot). Without it, the spectrum of the concatenated head outputs, each spectrum
    normalised by its own sum (the paper's definition).
    """
    gram = stats.gram
    values = []
    if o_weight is None:
        reference = singular_values_from_gram(gram)
        for head in range(site.num_heads):
            reduced = singular_values_from_gram(_drop_head(gram, head, site.head_dim, (0, 1)))
            values.append(ks_distance(reference, reduced))
    else:
        weight = o_weight.to(gram.dtype)
        reference = torch.linalg.svdvals(weight @ _psd_sqrt(gram))
        for head in range(site.num_heads):
            reduced_gram = _drop_head(gram, head, site.head_dim, (0, 1))
            reduced_weight = _drop_head(weight, head, site.head_dim, (1,))
            reduced = torch.linalg.svdvals(reduced_weight @ _psd_sqrt(reduced_gram))
            values.append(ks_distance(reference, reduced, scale_aware=True))
    return torch.stack(values).float()


def site_information_score(site: AttentionSite, stats: AttentionStats, o_weight: torch.Tensor | None) -> torch.Tensor:
    """S_h of every head of one block (`o_weight` given: the scale-aware variant)."""
    return (stats.erank.float() / site.head_dim) * head_ks(site, stats, o_weight)


def information_scores(
    model: nn.Module, sites: Sequence[AttentionSite], stats: Mapping[str, AttentionStats], scale_aware: bool
) -> Scores:
    """S_h = (eRank_h / head_dim) x KS_h per head of every block."""
    return {
        site.name: site_information_score(
            site, stats[site.name], get_linear(model, site.o).weight.detach() if scale_aware else None
        )
        for site in sites
    }


@register
class ErankKS(HeadImportance):
    """eRank x KS (scale-aware), scored at each block on the outputs the walk feeds it."""

    name = "infoprune_free"
    needs_head_statistics = True

    def block_scores(
        self, site: AttentionSite, statistics: AttentionStats | None, o_weight: torch.Tensor
    ) -> torch.Tensor | None:
        if statistics is None:
            raise ValueError("eRank x KS needs the block's head statistics")
        return site_information_score(site, statistics, o_weight)
