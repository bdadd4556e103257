"""The benchmark suite: InfoPrune against the baselines and Torch-Pruning at equal FLOPs, on real weights.

    python -m benchmarks.suite demo                      # every budget, scope and method of one target
    python -m benchmarks.suite minilm --budgets 0.8 0.5 --methods infoprune l1 tp_magnitude
    python -m benchmarks.suite --report demo minilm      # only rebuild tables and plots from saved cells

Targets: demo, vqa-vlm, minilm, smollm2 (build the real-weight ones first with
`python -m benchmarks.targets build`). Every (budget, scope, method) cell runs in its own process and
is saved as JSON under <results>/suite/<target>/cells/; a saved cell is reused unless --fresh, so an
interrupted suite resumes. The tables (markdown), plots and the combined JSON are rebuilt at the end.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from benchmarks.suite_cell import METHODS, CellSpec
from benchmarks.suite_report import summary_markdown, write_report
from benchmarks.suite_targets import TARGETS

RESULTS = Path(__file__).parent / "results"
BUDGETS = (0.8, 0.6, 0.5, 0.4, 0.3)


def cell_path(results: Path, spec: CellSpec) -> Path:
    name = "original" if spec.method == "original" else f"{spec.scope}-{spec.budget:.2f}-{spec.method}"
    if spec.method != "original":
        name += "-rec" * spec.recovery + f"-s{spec.seed}" * (spec.seed != 0)
    return results / "suite" / spec.target / "cells" / f"{name}.json"


def run_in_process(spec: CellSpec, timeout: float | None) -> dict[str, Any]:
    command = [sys.executable, "-m", "benchmarks.suite_cell", json.dumps(asdict(spec))]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return {**asdict(spec), "status": "failed", "error": f"timed out after {timeout} s"}
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        return {**asdict(spec), "status": "failed", "error": f"exit {done.returncode}: {done.stderr[-2000:]}"}
    return json.loads(lines[-1])


def cells_of(args: argparse.Namespace, target: str) -> list[CellSpec]:
    base = CellSpec(
        target=target,
        method="original",
        budget=1.0,
        scope=TARGETS[target].scopes[0],
        threads=args.threads,
        repeats=args.repeats,
        warmup=args.warmup,
        calibration_samples=args.calibration_samples,
        device=args.device,
        dtype=args.dtype,
    )
    scopes = [s for s in args.scopes or TARGETS[target].scopes if s in TARGETS[target].scopes]
    recovery = {"off": (False,), "on": (True,), "both": (False, True)}[args.recovery]
    cells = [base]
    for scope in scopes:
        for budget in args.budgets:
            for seed in args.seeds:
                for recovered in recovery:
                    cells.extend(
                        replace(base, method=m, budget=budget, scope=scope, seed=seed, recovery=recovered)
                        for m in args.methods
                    )
    return cells


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("targets", nargs="+", choices=sorted(TARGETS))
    parser.add_argument("--budgets", type=float, nargs="+", default=list(BUDGETS))
    parser.add_argument("--scopes", nargs="+", choices=("both", "vision", "language"))
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument(
        "--recovery", choices=("off", "on", "both"), default="both", help="without / with the default recovery"
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="calibration subsets (0: the first samples)")
    parser.add_argument("--calibration-samples", type=int, default=128)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=("float32", "float16", "bfloat16"))
    parser.add_argument("--timeout", type=float, default=None, help="seconds per cell")
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--fresh", action="store_true", help="rerun cells that already have results")
    parser.add_argument("--report", action="store_true", help="only rebuild tables and plots")
    args = parser.parse_args()
    for target in args.targets:
        if not args.report:
            for spec in cells_of(args, target):
                path = cell_path(args.results, spec)
                if path.exists() and not args.fresh:
                    continue
                row = run_in_process(spec, args.timeout)
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(json.dumps(row, indent=1))
                quality = row.get("quality", {}).get(TARGETS[target].metric)
                print(
                    f"{target} {spec.scope} {spec.budget:.2f} {spec.method}: {row['status']} "
                    f"quality={quality} flops={row.get('flops_ratio')} {row.get('error', '')[:200]}",
                    flush=True,
                )
        print(write_report(args.results, TARGETS[target]))
    summary = summary_markdown(args.results, [TARGETS[name] for name in sorted(TARGETS)])
    (args.results / "suite" / "SUMMARY.md").write_text(summary + "\n")
    print(summary)


if __name__ == "__main__":
    main()
