"""Running a GGUF in llama.cpp (through llama-cpp-python) next to the PyTorch model it came from."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from infoprune_core.export.llamacpp import open_llama


def llama_logits(path: Path, ids: Sequence[int]) -> np.ndarray:
    llm = open_llama(path, n_ctx=64)
    llm.eval(list(ids))
    logits = np.array(llm.scores[: len(ids)], dtype=np.float64)
    llm.close()
    return logits


def torch_logits(model: nn.Module, ids: Sequence[int]) -> np.ndarray:
    with torch.no_grad():
        return model(input_ids=torch.tensor([list(ids)])).logits[0].double().numpy()
