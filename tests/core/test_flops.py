"""Our FLOP count agrees with torch's own counter, and a budget holds in both counts."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from infoprune_core import CompressionConfig, compress, load_compressed
from infoprune_core.modeling import adapter_for_config, load_model
from infoprune_core.plan.flops import count_flops
from tests.core.conftest import calibration_for
from tests.core.tiny_models import sample_inputs

FAST = dict(calibration_samples=16, held_out_samples=4, recovery_steps=0, measure_latency=False)


def _torch_flops(model: torch.nn.Module, inputs: dict) -> float:
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(**inputs)
    return float(counter.get_total_flops())


def _outside_modules(model: torch.nn.Module, inputs: dict) -> float:
    """Products that no Linear, convolution or attention module makes, so ours does not count them: a
    dual encoder's image-text logits and Gemma 3's projector (a bare weight matrix); both lie outside
    every compressible part."""
    if hasattr(model, "logit_scale"):
        with torch.no_grad():
            width = model(**inputs).text_embeds.shape[-1]
        return 2.0 * inputs["input_ids"].shape[0] * inputs["pixel_values"].shape[0] * width
    projector = getattr(getattr(model, "model", None), "multi_modal_projector", None)
    weight = getattr(projector, "mm_input_projection_weight", None)
    if weight is None:
        return 0.0
    tokens = inputs["pixel_values"].shape[0] * model.config.mm_tokens_per_image
    return 2.0 * tokens * weight.numel()


@pytest.mark.parametrize("family", ["llama", "bert", "llava", "qwen2_vl", "clip_dual", "siglip_dual", "gemma3", "phi3"])
def test_linear_flops_equal_torchs_count_and_the_budget_holds_in_both(
    family: str, model_dirs, shapes_set, tmp_path: Path
) -> None:
    """torch's counter sees the linears and convolutions of a CPU model (it does not count attention run
    through scaled_dot_product_attention there): ours, without attention products, is the same number
    (plus the few products that are no module's, named below); and the compressed model meets the
    budget both with and without the attention products."""
    config = CompressionConfig(target_flops_ratio=0.5, calibration=calibration_for(family, shapes_set), **FAST)
    report = compress(str(model_dirs[family]), tmp_path / "out", config).report
    assert report["flops"]["scope_ratio"] <= 0.52 and report["flops"]["scope_ratio_linears"] <= 0.52
    inputs = sample_inputs(load_model(model_dirs[family]).model, batch=1)
    for model in (load_model(model_dirs[family]).model, load_compressed(tmp_path / "out")):
        ours = count_flops(model, adapter_for_config(model.config.to_dict()).attention_sites(model), inputs)
        expected = _torch_flops(model, inputs) - _outside_modules(model, inputs)
        assert sum(ours.modules.values()) == pytest.approx(expected, rel=1e-9)
