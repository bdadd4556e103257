"""How a head importance method plugs in: one class per method, behind one registry.

A method ranks the heads of a block (higher = keep). Global methods score every head once, on the
original model, before the walk (`prepare`); block methods score at the block, from the statistics
the walk collects there; the reconstruction method returns no scores and lets the re-fit error decide
each removal. Which heads a block keeps is then chosen within the shape the allocation gave it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from infoprune_core.adapters.base import AttentionSite
from infoprune_core.calibration.statistics import AttentionStats

Batch = Mapping[str, torch.Tensor]
Scores = dict[str, torch.Tensor]


@dataclass
class ScoringContext:
    """What a global method may look at before the walk: the original model and calibration data."""

    model: nn.Module
    sites: Sequence[AttentionSite]
    batches: Sequence[Batch]
    held_out: Sequence[Batch]
    seed: int
    gate_steps: int
    per_head_flops: Mapping[str, float]
    flops_to_remove: float  # attention FLOPs the plan removes (trained gates aim at it)
    on_step: Callable[[int, int], None]


class HeadImportance(ABC):
    name: ClassVar[str]
    needs_head_statistics: ClassVar[bool] = False  # per-head eRank and Gram of the block's head outputs

    def prepare(self, context: ScoringContext) -> None:  # noqa: B027 (optional hook: most methods need none)
        """Work done once before the walk (global methods score every head here)."""

    @abstractmethod
    def block_scores(
        self, site: AttentionSite, statistics: AttentionStats | None, o_weight: torch.Tensor
    ) -> torch.Tensor | None:
        """Scores of the block's heads ([num_heads], higher = keep), or None to choose by re-fit error."""


class GlobalScores(HeadImportance):
    """A method whose scores come from the whole original model, computed once in `prepare`."""

    def __init__(self) -> None:
        self.scores: Scores = {}

    def prepare(self, context: ScoringContext) -> None:
        self.scores = self.compute(context)

    @abstractmethod
    def compute(self, context: ScoringContext) -> Scores: ...

    def block_scores(
        self, site: AttentionSite, statistics: AttentionStats | None, o_weight: torch.Tensor
    ) -> torch.Tensor | None:
        return self.scores[site.name]


HEAD_METHODS: dict[str, type[HeadImportance]] = {}


def register(cls: type[HeadImportance]) -> type[HeadImportance]:
    HEAD_METHODS[cls.name] = cls
    return cls
