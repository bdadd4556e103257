"""`python -m benchmarks.targets build [--only NAME ...] [--cache DIR] [--force]`."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from benchmarks.targets import REQUIRES, TARGETS, builder
from benchmarks.targets.common import default_cache, package_missing, read_manifest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.targets", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    build = commands.add_parser("build", help="build targets into the cache folder (skips valid builds)")
    build.add_argument("--only", nargs="+", choices=TARGETS, help="build only these targets (and what they need)")
    build.add_argument("--cache", type=Path, default=None, help="cache folder (default: $INFOPRUNE_BENCH_CACHE)")
    build.add_argument("--force", action="store_true", help="rebuild the named targets even when valid")
    build.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    build.add_argument("--train-minutes", type=float, default=None, help="wall-time cap on projector training")
    listing = commands.add_parser("list", help="show the built targets and their key metrics")
    listing.add_argument("--cache", type=Path, default=None)
    args = parser.parse_args(argv)
    cache = (args.cache or default_cache()).expanduser().resolve()

    if args.command == "list":
        for name in TARGETS:
            manifest = read_manifest(cache / name)
            state = "built" if manifest else "missing"
            print(f"{name:14s} {state:8s} {cache / name}")
        return 0

    import torch

    torch.set_num_threads(args.threads)
    cache.mkdir(parents=True, exist_ok=True)
    failed = []
    for name in args.only or TARGETS:
        missing = next((reason for p in REQUIRES[name] if (reason := package_missing(p))), None)
        if missing:
            print(f"[{name}] skipped: {missing}", file=sys.stderr)
            failed.append(name)
            continue
        start = time.perf_counter()
        kwargs: dict[str, object] = {"force": args.force}
        if name == "vqa-vlm":
            from benchmarks.targets.vqa_vlm import TrainSettings

            overrides: dict[str, object] = {"threads": args.threads}
            if args.train_minutes is not None:
                overrides["max_train_seconds"] = args.train_minutes * 60
            kwargs["settings"] = TrainSettings(**overrides)  # type: ignore[arg-type]
        print(f"[{name}] building into {cache / name}", flush=True)
        folder = builder(name)(cache, **kwargs)
        manifest = read_manifest(folder) or {}
        print(
            f"[{name}] done in {time.perf_counter() - start:.1f}s; "
            f"metrics: {json.dumps(_headline(manifest.get('metrics', {})))}",
            flush=True,
        )
    return 1 if failed else 0


def _headline(metrics: dict) -> dict:
    """The metrics worth a line: everything but the training curve and settings."""
    return {k: v for k, v in metrics.items() if k not in ("training", "settings", "config")}


if __name__ == "__main__":
    sys.exit(main())
