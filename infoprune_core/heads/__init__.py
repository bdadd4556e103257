"""Head importance methods, one class each, found by name in one registry."""

from infoprune_core.heads import ablation, baselines, gates, information, reconstruction  # noqa: F401 (registers)
from infoprune_core.heads.base import HEAD_METHODS, HeadImportance, ScoringContext


class NoHeads(reconstruction.ReconstructionError):
    """heads="none": the walk never asks (no attention is cut); registered so every name resolves."""

    name = "none"


HEAD_METHODS[NoHeads.name] = NoHeads


def head_method(name: str) -> HeadImportance:
    try:
        return HEAD_METHODS[name]()
    except KeyError:
        raise ValueError(f"unknown head method {name!r}; known: {', '.join(sorted(HEAD_METHODS))}") from None


__all__ = ["HEAD_METHODS", "HeadImportance", "ScoringContext", "head_method"]
