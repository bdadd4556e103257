"""SmolLM2-135M in llama.cpp before and after compression: speed and perplexity, side by side.

    python -m benchmarks.llamacpp [--windows 16] [--length 128] [--generate 64] [--repeats 7]

The `smollm2-135m` target (`python -m benchmarks.targets build`) is compressed to 0.8x the FLOPs of
its language model twice (shape=free and shape=uniform; no recovery), and the original and both
results are exported with `infoprune export-gguf` (f16 for speed, f32 for the perplexity check; the
original folder goes through the same export with nothing cut). llama.cpp (llama-cpp-python, one
thread) then measures prompt processing (one `--length`-token batch) and generation (`--generate`
tokens one at a time after it), the models timed in turn within each repeat, median reported.
Perplexity is computed on the same `--windows` x `--length` token windows of the Python Language
Reference by llama.cpp (all logits, f32 KV cache) and by our PyTorch model (`load_compressed`); the
check is that they agree within 1%. Prints a table and writes benchmarks/results/llamacpp.json and .md.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from benchmarks.evaluators import perplexity, perplexity_windows
from benchmarks.targets.common import default_cache, package_versions
from infoprune_core import CompressionConfig, compress, load_compressed
from infoprune_core.calibration.samples import reference_paragraphs
from infoprune_core.export.gguf import export_gguf
from infoprune_core.export.llamacpp import open_llama

RESULTS = Path(__file__).parent / "results"
SHAPES: tuple[Literal["free", "uniform"], ...] = ("free", "uniform")
TOLERANCE = 0.01  # llama.cpp's perplexity within 1% of PyTorch's


def llama_perplexity(path: Path, windows: torch.Tensor) -> float:
    """Perplexity of llama.cpp's next-token logits over each window, as `evaluators.perplexity` counts it."""
    llm = open_llama(path, windows.shape[1])
    total = 0.0
    for window in windows.tolist():
        llm.reset()
        llm.eval(window)
        logits = np.asarray(llm.scores[: len(window) - 1], dtype=np.float64)
        peak = logits.max(axis=1, keepdims=True)
        log_norm = peak[:, 0] + np.log(np.exp(logits - peak).sum(axis=1))
        total += float((log_norm - logits[np.arange(len(window) - 1), window[1:]]).sum())
    llm.close()
    return math.exp(total / (windows.shape[0] * (windows.shape[1] - 1)))


def speeds(paths: dict[str, Path], prompt: Sequence[int], generate: int, repeats: int) -> dict[str, dict[str, float]]:
    """Median prompt-processing and generation tokens/s of each GGUF, the models timed in turn."""
    models = {name: open_llama(path, len(prompt) + generate + 1, all_logits=False) for name, path in paths.items()}
    runs: dict[str, dict[str, list[float]]] = {name: {"prompt": [], "generation": []} for name in models}
    for repeat in range(repeats + 1):  # the first round warms up
        for name, llm in models.items():
            llm.reset()
            start = time.perf_counter()
            llm.eval(list(prompt))
            middle = time.perf_counter()
            for token in prompt[:generate]:
                llm.eval([token])
            end = time.perf_counter()
            if repeat:
                runs[name]["prompt"].append(len(prompt) / (middle - start))
                runs[name]["generation"].append(generate / (end - middle))
    for llm in models.values():
        llm.close()
    return {
        name: {f"{kind}_tokens_per_s": statistics.median(values) for kind, values in measured.items()}
        for name, measured in runs.items()
    }


def tokenizer_agreement(path: Path, tokenizer: Any, texts: Sequence[str]) -> float:
    """Share of texts that llama.cpp tokenizes exactly as the transformers tokenizer."""
    llm = open_llama(path, 64, all_logits=False)
    same = [llm.tokenize(t.encode(), add_bos=False) == tokenizer(t, add_special_tokens=False).input_ids for t in texts]
    llm.close()
    return sum(same) / len(same)


def compress_shapes(source: Path, work: Path) -> dict[str, dict[str, Any]]:
    done: dict[str, dict[str, Any]] = {}
    for shape in SHAPES:
        config = CompressionConfig(
            target_flops_ratio=0.8, scope=("language",), recovery_steps=0, measure_latency=False, shape=shape
        )
        start = time.perf_counter()
        report = compress(str(source), work / shape, config).report
        done[shape] = {
            "path": work / shape,
            "compress_s": round(time.perf_counter() - start, 1),
            "scope_flops_ratio": report["flops"]["scope_ratio"],
            "params": report["params"]["after"]["total"],
            "engines": json.loads((work / shape / "infoprune.json").read_text())["engines"],
        }
    return done


def measure_original(source: Path, windows: torch.Tensor) -> dict[str, Any]:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32).eval()
    return {
        "path": source,
        "scope_flops_ratio": 1.0,
        "params": sum(p.numel() for p in model.parameters()),
        "ppl_torch": perplexity(model, windows, 4)["perplexity"],
    }


def export_and_check(name: str, row: dict[str, Any], work: Path, windows: torch.Tensor) -> dict[str, Path]:
    """Export one model in f16 and f32; its perplexity in PyTorch (artifacts) and in llama.cpp go into `row`."""
    source = row.pop("path")
    files = {dtype: export_gguf(source, work / f"{name}-{dtype}.gguf", dtype) for dtype in ("f16", "f32")}
    row["gguf_f16_bytes"] = files["f16"].stat().st_size
    if "ppl_torch" not in row:
        row["ppl_torch"] = perplexity(load_compressed(source), windows, 4)["perplexity"]
    row["ppl_llamacpp_f32"] = llama_perplexity(files["f32"], windows)
    row["ppl_llamacpp_f16"] = llama_perplexity(files["f16"], windows)
    row["ppl_relative_diff"] = row["ppl_llamacpp_f32"] / row["ppl_torch"] - 1
    return files


def table(result: dict[str, Any]) -> str:
    header = [
        "model", "params", "FLOPs", "prompt tok/s", "gen tok/s", "speed-up (prompt / gen)",
        "ppl PyTorch", "ppl llama.cpp f32", "diff", "ppl llama.cpp f16",
    ]  # fmt: skip
    rows = []
    base = result["models"]["original"]
    for name, row in result["models"].items():
        rows.append(
            [
                name,
                f"{row['params'] / 1e6:.1f}M",
                f"{row['scope_flops_ratio']:.3f}",
                f"{row['prompt_tokens_per_s']:.0f}",
                f"{row['generation_tokens_per_s']:.1f}",
                f"{row['prompt_tokens_per_s'] / base['prompt_tokens_per_s']:.2f}x / "
                f"{row['generation_tokens_per_s'] / base['generation_tokens_per_s']:.2f}x",
                f"{row['ppl_torch']:.3f}",
                f"{row['ppl_llamacpp_f32']:.3f}",
                f"{100 * row['ppl_relative_diff']:+.3f}%",
                f"{row['ppl_llamacpp_f16']:.3f}",
            ]
        )
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join([*lines, *("| " + " | ".join(row) + " |" for row in rows)])


def markdown(result: dict[str, Any]) -> str:
    settings = result["settings"]
    return "\n".join(
        [
            "# SmolLM2-135M in llama.cpp, before and after compression",
            "",
            f"Written by `python -m benchmarks.llamacpp` ({result['measured_at']}); raw numbers in `llamacpp.json`.",
            "",
            table(result),
            "",
            "- Compression: `CompressionConfig(target_flops_ratio=0.8, scope=('language',), recovery_steps=0, "
            "measure_latency=False, shape=...)`; FLOPs are of the language scope, as the report counts them. "
            "Exported with `infoprune export-gguf` (the original folder through the same export).",
            f"- Speed: llama-cpp-python {result['packages']['llama-cpp-python']}, 1 thread, f16 GGUFs, prompt of "
            f"{settings['length']} tokens in one batch, then {settings['generate']} tokens one at a time; median "
            f"of {settings['repeats']} repeats after a warm-up, the models timed in turn within each repeat.",
            f"- Perplexity: {settings['windows']} windows x {settings['length']} tokens of the Python Language "
            "Reference, the same token ids in both engines (llama.cpp: all logits, f32 KV cache). "
            f"Check: llama.cpp f32 within {100 * TOLERANCE:.0f}% of PyTorch for every model: "
            f"**{'passed' if result['check_passed'] else 'FAILED'}**.",
            "- Quality (no recovery): perplexity "
            + ", ".join(f"{name} {row['ppl_torch']:.1f}" for name, row in result["models"].items())
            + "; the speed-ups are of these models as compressed, before any recovery.",
            f"- Tokenization: llama.cpp tokenized {100 * result['tokenizer_agreement']:.0f}% of "
            f"{settings['tokenizer_texts']} Language Reference paragraphs exactly as the transformers tokenizer.",
            "",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=default_cache() / "smollm2-135m" / "model")
    parser.add_argument("--windows", type=int, default=16)
    parser.add_argument("--length", type=int, default=128)
    parser.add_argument("--generate", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    if not (args.model / "config.json").is_file():
        raise SystemExit(f"{args.model} is missing: run `python -m benchmarks.targets build` first")
    from transformers import AutoTokenizer

    torch.set_num_threads(1)
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    texts = reference_paragraphs(400)
    windows = perplexity_windows(tokenizer, texts, args.windows, args.length)
    with tempfile.TemporaryDirectory(prefix="llamacpp-bench-") as scratch:
        work = Path(scratch)
        models = {"original": measure_original(args.model, windows), **compress_shapes(args.model, work)}
        gguf = {name: export_and_check(name, row, work, windows) for name, row in models.items()}
        f16 = {name: files["f16"] for name, files in gguf.items()}
        for name, measured in speeds(f16, windows[0].tolist(), args.generate, args.repeats).items():
            models[name].update(measured)
        agreement = tokenizer_agreement(gguf["original"]["f16"], tokenizer, texts[:100])
    from importlib.metadata import version

    result = {
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "model": str(args.model),
        "settings": {**{k: v for k, v in vars(args).items() if k != "model"}, "threads": 1, "tokenizer_texts": 100},
        "packages": {**package_versions(), "llama-cpp-python": version("llama-cpp-python")},
        "models": models,
        "check_passed": all(abs(row["ppl_relative_diff"]) <= TOLERANCE for row in models.values()),
        "tokenizer_agreement": agreement,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "llamacpp.json").write_text(json.dumps(result, indent=1, default=str) + "\n")
    (RESULTS / "llamacpp.md").write_text(markdown(result))
    print(table(result))
    if not result["check_passed"]:
        raise SystemExit("llama.cpp's perplexity differs from PyTorch's by more than 1%")


if __name__ == "__main__":
    main()
