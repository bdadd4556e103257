"""Turning head scores into kept heads under an attention FLOP budget (GQA-safe)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from infoprune_core.adapters.base import AttentionSite
from infoprune_core.flops import FlopCount, attention_core_flops


def head_flops(site: AttentionSite, counts: FlopCount, hidden: int) -> float:
    """FLOPs one query head costs at `site`: its q rows, o columns and attention products, plus its
    k/v rows when every head has its own KV head (with GQA the KV heads stay while their group lives)."""
    tokens = counts.tokens.get(site.q, 0)
    sequence = counts.sequence.get(site.name, 0)
    batch_rows = tokens // max(sequence, 1)
    matrices = 4 if site.group_size == 1 else 2
    projections = 2.0 * tokens * hidden * site.head_dim * matrices
    return projections + batch_rows * attention_core_flops(sequence, 1, site.head_dim)


def _removal_unit(scores: torch.Tensor, kept: list[int], site: AttentionSite) -> list[int] | None:
    """The next heads to remove at a site: the weakest head of every KV group (GQA), or the weakest head."""
    if site.group_size == 1:
        return [min(kept, key=lambda h: float(scores[h]))] if len(kept) > 1 else None
    groups: dict[int, list[int]] = {}
    for head in kept:
        groups.setdefault(head // site.group_size, []).append(head)
    if any(len(heads) <= 1 for heads in groups.values()):
        return None  # one query head per KV group is the floor
    return [min(heads, key=lambda h: float(scores[h])) for heads in groups.values()]


def select_heads(
    sites: Sequence[AttentionSite],
    scores: Mapping[str, torch.Tensor],
    per_head_flops: Mapping[str, float],
    flops_to_remove: float,
) -> dict[str, list[int]]:
    """Greedily remove the lowest-scoring removable units until `flops_to_remove` is reached.

    Scores are compared across layers as they are; a layer always keeps one query head per KV group.
    """
    kept = {site.name: list(range(site.num_heads)) for site in sites}
    by_name = {site.name: site for site in sites}
    removed = 0.0
    while removed < flops_to_remove:
        best: tuple[float, str, list[int]] | None = None
        for name, heads in kept.items():
            unit = _removal_unit(scores[name], heads, by_name[name])
            if unit is None:
                continue
            value = float(scores[name][unit].mean())
            if best is None or value < best[0]:
                best = (value, name, unit)
        if best is None:
            break
        _, name, unit = best
        kept[name] = [h for h in kept[name] if h not in unit]
        removed += per_head_flops[name] * len(unit)
    return kept
