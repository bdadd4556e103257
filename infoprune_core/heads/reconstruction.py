"""The default head criterion: remove whichever head (or KV group) the re-fit can best do without.

The cost of a removal is the error the ridge re-fit of the output projection cannot undo (the OBS
cost on the block's Gram matrix of head outputs), re-evaluated after every removal.
"""

from __future__ import annotations

import torch

from infoprune_core.adapters.base import AttentionSite
from infoprune_core.calibration.statistics import AttentionStats
from infoprune_core.heads.base import HeadImportance, register


@register
class ReconstructionError(HeadImportance):
    name = "reconstruction"

    def block_scores(
        self, site: AttentionSite, statistics: AttentionStats | None, o_weight: torch.Tensor
    ) -> torch.Tensor | None:
        return None
