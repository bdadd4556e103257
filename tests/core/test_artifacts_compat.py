"""Artifacts written before the sequential engine still load, to the very same function."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from infoprune_core import load_compressed

FIXTURES = Path(__file__).parent / "fixtures" / "main_artifacts"


@pytest.mark.parametrize("family", ["llama", "bert"])
def test_an_artifact_of_the_previous_pipeline_loads_and_computes_the_same(family: str) -> None:
    folder = FIXTURES / family
    stored = load_file(str(folder / "reference_outputs.safetensors"))
    inputs = {key.removeprefix("input."): value for key, value in stored.items() if key.startswith("input.")}
    model = load_compressed(folder)
    with torch.no_grad():
        output = model(**inputs)
    result = output.logits if getattr(output, "logits", None) is not None else output.last_hidden_state
    torch.testing.assert_close(result, stored["output"], rtol=1e-5, atol=1e-6)
