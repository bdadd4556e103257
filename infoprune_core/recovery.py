"""Optional recovery: a short distillation of the compressed model from the original.

The loss is the divergence of the outputs (KL on logits, relative error on features) plus, weighted
by `hidden_weight`, the relative squared error of every compressed block's output against the
original's (hidden-state matching, as Minitron and LLM-Streamline do). The original is run alongside
without gradients. Which weights train is a choice: all but the embeddings and output head, or only
a VLM's projector.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from infoprune_core.objectives import divergence, model_output

Batch = Mapping[str, torch.Tensor]


@dataclass(frozen=True)
class RecoverySettings:
    steps: int
    learning_rate: float
    hidden_weight: float  # weight of the block-output matching term (0: outputs only)
    parameters: str  # "all", or "projector" (a VLM's projector alone)


@contextmanager
def block_outputs(model: nn.Module, blocks: Sequence[str], into: list[torch.Tensor]) -> Iterator[None]:
    """Append the output of every named block to `into` while inside."""

    def keep(_: nn.Module, __: tuple, output: torch.Tensor | tuple) -> None:
        into.append(output[0] if isinstance(output, tuple) else output)

    with ExitStack() as hooks:
        for name in blocks:
            handle = model.get_submodule(name).register_forward_hook(keep)
            hooks.callback(handle.remove)
        yield


def hidden_mismatch(
    student: Sequence[torch.Tensor], teacher: Sequence[torch.Tensor], mask: torch.Tensor | None
) -> torch.Tensor:
    """Mean over blocks of ||s - t||^2 / ||t||^2 over the valid tokens."""
    losses = []
    for s, t in zip(student, teacher, strict=True):
        valid = torch.ones(t.shape[:-1], dtype=t.dtype, device=t.device)
        if mask is not None and mask.shape == t.shape[:-1]:
            valid = mask.to(t.dtype)
        error = ((s.float() - t.float()).pow(2).sum(-1) * valid).sum()
        losses.append(error / ((t.float().pow(2).sum(-1) * valid).sum()).clamp_min(1e-12))
    return torch.stack(losses).mean()


def trainable(model: nn.Module, which: str, projector: str | None) -> list[nn.Parameter]:
    """The weights recovery trains: a VLM's projector, or everything but the token embeddings and the
    output head (they were not cut, and with a large vocabulary they are the costliest to train)."""
    if which == "projector":
        if projector is None:
            raise ValueError("recovery of the projector alone needs a model with a projector (a VLM)")
        return list(model.get_submodule(projector).parameters())
    frozen: set[int] = set()
    for getter in ("get_input_embeddings", "get_output_embeddings"):
        try:
            module = getattr(model, getter, lambda: None)()
        except NotImplementedError:  # models of two towers have no single embedding
            continue
        if isinstance(module, nn.Module):
            frozen.update(id(p) for p in module.parameters())
    return [p for p in model.parameters() if id(p) not in frozen]


def distill(
    student: nn.Module,
    teacher: nn.Module,
    batches: Sequence[Batch],
    settings: RecoverySettings,
    blocks: Sequence[str],
    projector: str | None = None,
    on_step: Callable[[int, int], None] | None = None,
) -> list[float]:
    """AdamW on the chosen student weights against the teacher's outputs; returns the loss per step.

    Dropout stays off (eval mode): the data is the small calibration set, not a training corpus.
    """
    parameters = trainable(student, settings.parameters, projector)
    student.requires_grad_(False)
    for parameter in parameters:
        parameter.requires_grad_(True)
    optimiser = torch.optim.AdamW(parameters, lr=settings.learning_rate, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimiser, lambda step: 1 - step / max(settings.steps, 1))
    matched = blocks if settings.hidden_weight > 0 else ()
    losses = []
    for step in range(settings.steps):
        batch = batches[step % len(batches)]
        mask = batch.get("attention_mask")
        wanted: list[torch.Tensor] = []
        with torch.no_grad(), block_outputs(teacher, matched, wanted):
            target, logits = model_output(teacher, batch)
        seen: list[torch.Tensor] = []
        with block_outputs(student, matched, seen):
            output, _ = model_output(student, batch)
        loss = divergence(output, target, logits, mask)
        if matched:
            loss = loss + settings.hidden_weight * hidden_mismatch(seen, wanted, mask)
        optimiser.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(parameters, 1.0)
        optimiser.step()
        schedule.step()
        losses.append(loss.item())
        if on_step is not None:
            on_step(step + 1, settings.steps)
    student.requires_grad_(False)
    student.eval()
    return losses


@dataclass(frozen=True)
class RecoveryOutcome:
    losses: list[float]
    kept: bool  # whether the distilled weights were kept (else the compressed ones were put back)
    distance_before: float
    distance_after: float


def recover_if_closer(
    student: nn.Module,
    teacher: nn.Module,
    batches: Sequence[Batch],
    settings: RecoverySettings,
    blocks: Sequence[str],
    distance: Callable[[nn.Module], float],
    projector: str | None = None,
    on_step: Callable[[int, int], None] | None = None,
) -> RecoveryOutcome:
    """Distil, then keep the distilled weights only if they are closer to the original by `distance`
    (held-out data): on a small set, distillation can move a model that was already close away from
    the original, since Adam's steps do not shrink with the gradient."""
    before = distance(student)
    saved = {name: parameter.detach().clone() for name, parameter in student.named_parameters()}
    losses = distill(student, teacher, batches, settings, blocks, projector, on_step)
    after = distance(student)
    kept = after <= before
    if not kept:
        with torch.no_grad():
            for name, parameter in student.named_parameters():
                parameter.copy_(saved[name])
    return RecoveryOutcome(losses, kept, before, after)
