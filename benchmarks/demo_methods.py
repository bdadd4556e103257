"""InfoPrune against the baselines on the demo VLM, at several budgets, measured side by side.

    python -m benchmarks.demo_methods [--budgets 0.7 0.5 0.3] [--quick]

For every budget and method it compresses the shipped demo model with the same calibration set,
evaluates held-out accuracy (before, after compression, after recovery), FLOPs of the scope and the
CPU latency before/after in the same process, prints a table and writes
benchmarks/results/demo_methods.json.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from infoprune_core import CompressionConfig, InfoPruneError, compress
from infoprune_core.demo import demo_calibration_path, demo_eval_path, demo_model_dir
from infoprune_core.report_table import table

RESULTS = Path(__file__).parent / "results"
# (heads, ffn): the method and every baseline behind the same interface.
METHODS = [
    ("infoprune", "whitened_svd"),
    ("infoprune_free", "whitened_svd"),
    ("random", "whitened_svd"),
    ("l1", "whitened_svd"),
    ("taylor", "whitened_svd"),
    ("entropy", "whitened_svd"),
    ("infoprune", "svd"),
    ("infoprune", "uniform"),
    ("infoprune", "width"),
]


def run_one(heads: str, ffn: str, budget: float, args: argparse.Namespace) -> dict[str, Any]:
    config = CompressionConfig(
        target_flops_ratio=budget, heads=heads, ffn=ffn, calibration=str(demo_calibration_path()),
        eval_set=str(demo_eval_path()), recovery_steps=args.recovery_steps, gate_steps=args.gate_steps,
        latency_batch=32, latency_repeats=args.repeats, threads=args.threads,
    )
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as scratch:
        try:
            report = compress(str(demo_model_dir()), Path(scratch) / "out", config).report
        except InfoPruneError as error:
            return {"heads": heads, "ffn": ffn, "budget": budget, "error": str(error)}
    accuracy, latency = report["accuracy"], report["latency"]
    return {
        "heads": heads, "ffn": ffn, "budget": budget,
        "flops_ratio": report["flops"]["scope_ratio"],
        "params_ratio": report["params"]["after"]["total"] / report["params"]["before"]["total"],
        "accuracy_before": accuracy["before"],
        "accuracy_compressed": accuracy["after_compression"],
        "accuracy_recovered": accuracy.get("after_recovery"),
        "latency_before_ms": latency["before"]["median_ms"],
        "latency_after_ms": latency["after"]["median_ms"],
        "speedup_batch32": latency["speedup"],
        "wall_seconds": time.perf_counter() - started,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budgets", type=float, nargs="+", default=[0.7, 0.5, 0.3])
    parser.add_argument("--recovery-steps", type=int, default=100)
    parser.add_argument("--gate-steps", type=int, default=150)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="two methods, one budget (a smoke run)")
    parser.add_argument("--output", type=Path, default=RESULTS / "demo_methods.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    methods = METHODS[:2] if args.quick else METHODS
    budgets = args.budgets[:1] if args.quick else args.budgets
    rows = []
    for budget in budgets:
        for heads, ffn in methods:
            row = run_one(heads, ffn, budget, args)
            rows.append(row)
            print(json.dumps(row), flush=True)
    header = ["budget", "heads", "ffn", "FLOPs", "acc before", "acc compressed", "acc recovered", "speed-up b32"]
    print(table(header, [
        [r["budget"], r["heads"], r["ffn"], r.get("flops_ratio"), r.get("accuracy_before"),
         r.get("accuracy_compressed"), r.get("accuracy_recovered"), r.get("speedup_batch32") or r.get("error")]
        for r in rows
    ]))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    document = {"model": "infoprune demo VLM", "threads": args.threads, "torch": torch.__version__,
                "recovery_steps": args.recovery_steps, "gate_steps": args.gate_steps, "rows": rows}
    args.output.write_text(json.dumps(document, indent=2))
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
