"""How well each head score predicts the real damage of removing a head alone (single-head ablation)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from infoprune_core.adapters.base import Stack
from infoprune_core.heads.ablation import ablation_scores, rank_correlation
from infoprune_core.heads.baselines import l1_scores, random_scores, taylor_scores
from infoprune_core.heads.information import information_scores
from infoprune_core.modeling import LoadedModel
from infoprune_core.objectives import teacher_outputs

if TYPE_CHECKING:
    from infoprune_core.run import CalibrationData, Run


def validate_scores(loaded: LoadedModel, stacks: Sequence[Stack], data: CalibrationData, run: Run) -> dict[str, Any]:
    """Spearman correlation of each score with single-head ablation damage on held-out data."""
    from infoprune_core.run import collect_statistics

    model = loaded.model
    sites = [block.attention for stack in stacks for block in stack.blocks if block.attention is not None]
    stats = collect_statistics(model, sites, [], data.calibration, run, "profiling")
    teachers = teacher_outputs(model, data.held_out)
    reference = ablation_scores(model, sites, data.held_out, teachers, run.ticker("profiling", "ablating head"))
    candidates = {
        "infoprune_paper": information_scores(model, sites, stats.attention, scale_aware=False),
        "infoprune_scale_aware": information_scores(model, sites, stats.attention, scale_aware=True),
        "l1": l1_scores(model, sites),
        "taylor": taylor_scores(model, sites, data.calibration),
        "random": random_scores(sites, 0),
    }
    return {
        "reference": "single-head ablation",
        "spearman": {name: rank_correlation(score, reference) for name, score in candidates.items()},
        "ablation": {name: values.tolist() for name, values in reference.items()},
    }
