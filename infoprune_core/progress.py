"""Progress reporting from the pipeline to whoever runs it (CLI bar, worker events).

The callback may raise (for example to cancel a job); the pipeline lets the exception propagate
and leaves nothing half-written in the output directory.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

Stage = Literal["loading", "profiling", "pruning_heads", "compressing_ffn", "recovering", "evaluating", "saving"]
STAGES: tuple[Stage, ...] = Stage.__args__  # type: ignore[attr-defined]


@dataclass(frozen=True)
class ProgressEvent:
    stage: Stage
    fraction: float  # 0..1 within the stage
    message: str = ""

    @property
    def overall(self) -> float:
        """Rough 0..1 progress over all stages (stages weighted equally)."""
        return (STAGES.index(self.stage) + min(max(self.fraction, 0.0), 1.0)) / len(STAGES)


ProgressCallback = Callable[[ProgressEvent], None]


def no_progress(_: ProgressEvent) -> None:
    """Default callback: report nothing."""
