"""Recovery: distillation with output KL plus block-output matching, on all weights or the projector alone."""

from __future__ import annotations

import copy

import torch

from infoprune_core.modeling import adapter_for_config
from infoprune_core.recovery import RecoverySettings, block_outputs, distill, hidden_mismatch
from tests.core.tiny_models import sample_inputs, tiny_llama, tiny_llava


def _perturbed(model: torch.nn.Module, scale: float = 0.05) -> torch.nn.Module:
    student = copy.deepcopy(model)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for parameter in student.parameters():
            parameter.add_(scale * torch.randn(parameter.shape, generator=generator))
    return student


def _blocks(model: torch.nn.Module) -> list[str]:
    adapter = adapter_for_config(model.config.to_dict())
    return [block.name for stack in adapter.stacks(model) for block in stack.blocks]


def test_block_matching_is_zero_for_the_same_model_and_positive_otherwise() -> None:
    teacher = tiny_llama()
    inputs = sample_inputs(teacher)
    blocks = _blocks(teacher)
    outputs: dict[str, list[torch.Tensor]] = {}
    for name, model in {"teacher": teacher, "same": copy.deepcopy(teacher), "other": _perturbed(teacher)}.items():
        outputs[name] = []
        with torch.no_grad(), block_outputs(model, blocks, outputs[name]):
            model(**inputs)
    assert len(outputs["teacher"]) == len(blocks)
    assert float(hidden_mismatch(outputs["same"], outputs["teacher"], inputs["attention_mask"])) == 0.0
    assert float(hidden_mismatch(outputs["other"], outputs["teacher"], inputs["attention_mask"])) > 1e-4


def test_distillation_lowers_the_loss() -> None:
    teacher = tiny_llama()
    student = _perturbed(teacher)
    batches = [sample_inputs(teacher, batch=4)]
    settings = RecoverySettings(steps=30, learning_rate=3e-3, hidden_weight=1.0, parameters="all")
    embeddings = student.get_input_embeddings().weight.detach().clone()
    head = student.get_output_embeddings().weight.detach().clone()
    losses = distill(student, teacher, batches, settings, _blocks(teacher))
    assert losses[-1] < 0.5 * losses[0]
    assert torch.equal(student.get_input_embeddings().weight, embeddings), "embeddings stay"
    assert torch.equal(student.get_output_embeddings().weight, head), "so does the output head"
    assert not any(p.requires_grad for p in student.parameters()), "weights are frozen again afterwards"


def test_projector_recovery_trains_the_projector_alone() -> None:
    teacher = tiny_llava()
    student = _perturbed(teacher)
    before = {name: p.detach().clone() for name, p in student.named_parameters()}
    projector = adapter_for_config(teacher.config.to_dict()).projector(teacher)
    assert projector is not None
    settings = RecoverySettings(steps=3, learning_rate=1e-2, hidden_weight=0.0, parameters="projector")
    distill(student, teacher, [sample_inputs(teacher)], settings, [], projector)
    for name, parameter in student.named_parameters():
        moved = not torch.equal(parameter, before[name])
        assert moved == name.startswith(projector + "."), name
