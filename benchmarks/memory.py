"""Peak memory of compression against the size of the weights, on a ~1B-parameter Llama.

    python -m benchmarks.memory [--layers 22] [--budget 0.8] [--calibration-samples 32]

A randomly initialised Llama with TinyLlama-1.1B's shape (hidden 2048, 22 layers, FFN 5632, 32 query
heads in 4 KV groups, vocabulary 32000) is built from its config, saved as safetensors with a BPE
tokenizer trained on the shipped calibration text, and compressed with default settings (no recovery,
no latency) in a child process whose peak RSS is read from the kernel. Random weights say nothing
about quality; this measures memory and time only. Prints a table and writes
benchmarks/results/memory.json.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"
SHAPE: dict[str, Any] = dict(
    hidden_size=2048,
    intermediate_size=5632,
    num_attention_heads=32,
    num_key_value_heads=4,
    vocab_size=32000,
    max_position_embeddings=2048,
    tie_word_embeddings=False,
)


def build(folder: Path, layers: int) -> int:
    """Save the random model and its tokenizer into `folder`; returns the parameter count."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    from infoprune_core.calibration import default_text_samples

    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(**SHAPE, num_hidden_layers=layers)).eval()
    model.save_pretrained(folder)
    count = sum(p.numel() for p in model.parameters())
    del model
    core = Tokenizer(models.BPE(unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    texts = [s.text or "" for s in default_text_samples()]
    core.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=4000, special_tokens=["<unk>", "<s>", "</s>"]))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, unk_token="<unk>", bos_token="<s>", eos_token="</s>")
    tokenizer.save_pretrained(folder)
    return count


def compress_child(source: str, output: str, budget: float, samples: int) -> None:
    """Run in the child: compress with defaults and print one JSON line with the peak RSS."""
    from infoprune_core import CompressionConfig, compress

    config = CompressionConfig(
        target_flops_ratio=budget, calibration_samples=samples, recovery_steps=0, measure_latency=False
    )
    start = time.perf_counter()
    report = compress(source, output, config).report
    print(
        json.dumps(
            {
                "seconds": time.perf_counter() - start,
                "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                "scope_ratio": report["flops"]["scope_ratio"],
                "params_after": report["params"]["after"]["total"],
                "stages_seconds": report["stages_seconds"],
            }
        ),
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layers", type=int, default=22)
    parser.add_argument("--budget", type=float, default=0.8)
    parser.add_argument("--calibration-samples", type=int, default=32)
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        compress_child(args.child[0], args.child[1], args.budget, args.calibration_samples)
        return
    with tempfile.TemporaryDirectory(dir=os.environ.get("TMPDIR")) as scratch:
        source = Path(scratch) / "llama-1b"
        parameters = build(source, args.layers)
        weights_mb = parameters * 4 / 2**20
        command = [sys.executable, "-m", "benchmarks.memory", "--budget", str(args.budget)]
        command += ["--calibration-samples", str(args.calibration_samples), "--child", str(source)]
        command.append(str(Path(scratch) / "out"))
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
        if done.returncode != 0 or not lines:
            raise SystemExit(f"compression failed: {done.stderr[-3000:]}")
        child = json.loads(lines[-1])
    # The stream of calibration activations held between blocks: samples x tokens x hidden, float32.
    activations_mb = args.calibration_samples * 64 * SHAPE["hidden_size"] * 4 / 2**20
    result = {
        "model": {**SHAPE, "num_hidden_layers": args.layers, "parameters": parameters},
        "weights_fp32_mb": weights_mb,
        "calibration_activations_mb": activations_mb,
        "budget": args.budget,
        "calibration_samples": args.calibration_samples,
        **child,
        "peak_over_weights": child["peak_rss_mb"] / weights_mb,
        "target_mb": 1.5 * weights_mb + activations_mb,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "memory.json").write_text(json.dumps(result, indent=1))
    header = ["parameters", "fp32 weights MB", "peak RSS MB", "peak / weights", "1.5x weights + activations MB", "s"]
    values = [
        f"{parameters / 1e9:.2f}B",
        f"{weights_mb:.0f}",
        f"{child['peak_rss_mb']:.0f}",
        f"{result['peak_over_weights']:.2f}",
        f"{result['target_mb']:.0f}",
        f"{child['seconds']:.0f}",
    ]
    print("| " + " | ".join(header) + " |\n|" + "---|" * len(header) + "\n| " + " | ".join(values) + " |")


if __name__ == "__main__":
    main()
