"""Optional recovery: a short distillation of the compressed model from the original."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch
from torch import nn

from infoprune_core.objectives import TeacherOutputs, divergence, model_output


def distill(
    student: nn.Module,
    teacher: nn.Module,
    batches: Sequence[Mapping[str, torch.Tensor]],
    steps: int,
    learning_rate: float = 1e-4,
    on_step: Callable[[int, int], None] | None = None,
) -> list[float]:
    """AdamW on all student weights against the teacher's outputs; returns the loss per step.

    Dropout stays off (eval mode): the data is the small calibration set, not a training corpus.
    """
    student.requires_grad_(True)
    optimiser = torch.optim.AdamW(student.parameters(), lr=learning_rate, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimiser, lambda step: 1 - step / max(steps, 1))
    losses = []
    targets = TeacherOutputs(teacher)
    for step in range(steps):
        batch = batches[step % len(batches)]
        target, logits = targets(step % len(batches), batch)
        output, _ = model_output(student, batch)
        loss = divergence(output, target, logits, batch.get("attention_mask"))
        optimiser.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(student.parameters(), 1.0)
        optimiser.step()
        schedule.step()
        losses.append(loss.item())
        if on_step is not None:
            on_step(step + 1, steps)
    student.requires_grad_(False)
    student.eval()
    return losses
