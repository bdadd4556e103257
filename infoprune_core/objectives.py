"""What "the model's output" is for distillation and fidelity, and how far two outputs are apart."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

READER = "_infoprune_read_output"  # the attribute a loaded model carries its family's output reader in


def logits_or_hidden(output: Any) -> tuple[torch.Tensor, bool]:
    """(logits, True) when the model has a head, else (last hidden state, False)."""
    logits = getattr(output, "logits", None)
    if logits is not None:
        return logits.float(), True
    return output.last_hidden_state.float(), False


def model_output(model: nn.Module, batch: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, bool]:
    """The model's output as its family reads it (the reader its adapter attached when it was loaded)."""
    read = getattr(model, READER, logits_or_hidden)
    return read(model(**batch))


def _token_weights(output: torch.Tensor, token_mask: torch.Tensor | None) -> torch.Tensor:
    if output.dim() == 3 and token_mask is not None and token_mask.shape == output.shape[:2]:
        return token_mask.to(output.dtype)
    return torch.ones(output.shape[:-1], dtype=output.dtype, device=output.device)


def divergence(
    student: torch.Tensor, teacher: torch.Tensor, logits: bool, token_mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Mean KL(teacher || student) over valid positions for logits; relative squared error for features."""
    weights = _token_weights(teacher, token_mask)
    if logits:
        per_token = F.kl_div(
            F.log_softmax(student, -1), F.log_softmax(teacher, -1), log_target=True, reduction="none"
        ).sum(-1)
    else:
        scale = (teacher.pow(2).sum(-1) * weights).sum() / weights.sum().clamp_min(1)
        per_token = (student - teacher).pow(2).sum(-1) / scale.clamp_min(1e-12)
    return (per_token * weights).sum() / weights.sum().clamp_min(1)


def cosine(student: torch.Tensor, teacher: torch.Tensor, token_mask: torch.Tensor | None = None) -> torch.Tensor:
    weights = _token_weights(teacher, token_mask)
    similarity = F.cosine_similarity(student, teacher, dim=-1)
    return (similarity * weights).sum() / weights.sum().clamp_min(1)


def top1_agreement(
    student: torch.Tensor, teacher: torch.Tensor, token_mask: torch.Tensor | None = None
) -> torch.Tensor:
    weights = _token_weights(teacher, token_mask)
    same = (student.argmax(-1) == teacher.argmax(-1)).to(weights.dtype)
    return (same * weights).sum() / weights.sum().clamp_min(1)


def self_supervised_loss(output: torch.Tensor, logits: bool, token_mask: torch.Tensor | None = None) -> torch.Tensor:
    """A loss with a non-zero gradient at the unpruned model (for Taylor scores).

    Logits: cross-entropy against the model's own predictions; features: mean output energy.
    """
    weights = _token_weights(output, token_mask)
    if logits:
        per_token = F.cross_entropy(
            output.reshape(-1, output.shape[-1]), output.argmax(-1).reshape(-1).detach(), reduction="none"
        ).reshape(weights.shape)
    else:
        per_token = output.pow(2).mean(-1)
    return (per_token * weights).sum() / weights.sum().clamp_min(1)


class TeacherOutputs:
    """The unpruned model's outputs per calibration batch, cached while they fit in `budget_bytes`.

    Gate training and recovery revisit the same batches many times; caching saves one forward per
    step, and recomputing keeps memory bounded for large vocabularies.
    """

    def __init__(self, model: nn.Module, budget_bytes: int = 256 * 1024 * 1024) -> None:
        self.model = model
        self.budget = budget_bytes
        self.used = 0
        self.cache: dict[int, tuple[torch.Tensor, bool]] = {}

    def __call__(self, index: int, batch: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, bool]:
        if index in self.cache:
            return self.cache[index]
        with torch.no_grad():
            output = model_output(self.model, batch)
        size = output[0].numel() * output[0].element_size()
        if self.used + size <= self.budget:
            self.cache[index] = output
            self.used += size
        return output


def teacher_outputs(model: nn.Module, batches: Sequence[Mapping[str, torch.Tensor]]) -> list[tuple[torch.Tensor, bool]]:
    """The model's outputs per batch, kept in float16 (a large vocabulary's logits are big; 11 bits of
    mantissa move a KL by about 1e-5)."""
    with torch.no_grad():
        return [(output.half(), logits) for output, logits in (model_output(model, batch) for batch in batches)]
