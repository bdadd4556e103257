"""The `infoprune` command: `compress` and `profile` from the core; service commands are plugins.

Service commands (`serve`, `worker`, `keys`) are registered through the `infoprune.commands`
entry-point group and imported only when present, so the core never imports the service.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from infoprune_core.config import FFN_METHODS, HEAD_METHODS, CompressionConfig
from infoprune_core.errors import InfoPruneError
from infoprune_core.progress import ProgressEvent
from infoprune_core.report_table import format_profile, format_report


class ProgressBar:
    """A tqdm bar over all stages, with the current stage and message as its description."""

    def __init__(self) -> None:
        from tqdm import tqdm

        self.bar = tqdm(total=1000, unit="‰", bar_format="{l_bar}{bar}| {elapsed}", file=sys.stderr)

    def __call__(self, event: ProgressEvent) -> None:
        self.bar.set_description_str(f"{event.stage}: {event.message}"[:60], refresh=False)
        self.bar.update(max(int(event.overall * 1000) - self.bar.n, 0))

    def close(self) -> None:
        self.bar.close()


def _default(field: str) -> Any:
    """The library's default, so the CLI and `CompressionConfig` never disagree."""
    return CompressionConfig.model_fields[field].default


def _scope(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", help="local model directory, s3://bucket/prefix, or a hub ID")
    parser.add_argument(
        "--scope",
        type=_scope,
        default=_default("scope"),
        help="parts to compress: vision, language, or vision,language (default)",
    )
    parser.add_argument("--calibration", help="folder of images or JSONL of {image, text} (default: shipped set)")
    parser.add_argument("--calibration-samples", type=int, default=_default("calibration_samples"))
    parser.add_argument("--batch-size", type=int, default=_default("batch_size"))
    parser.add_argument(
        "--threads", type=int, default=_default("threads"), help="torch threads (LAPACK is slow when contended)"
    )
    parser.add_argument("--device", default=_default("device"))
    parser.add_argument(
        "--validate-scores",
        action="store_true",
        help="check head scores against single-head ablation (slow on big models)",
    )
    parser.add_argument("--json", dest="json_path", type=Path, help="also write the result as JSON here")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="infoprune", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    compress = commands.add_parser("compress", help="compress a model into a smaller, faster checkpoint")
    _common(compress)
    compress.add_argument("--output", "-o", type=Path, required=True, help="new directory for the artifact")
    compress.add_argument("--target-flops", type=float, help="fraction of the scope's FLOPs to keep, e.g. 0.5")
    compress.add_argument("--head-keep-ratio", type=float, help="explicit: fraction of attention FLOPs to keep")
    compress.add_argument("--ffn-epsilon", type=float, help="explicit: relative re-fit error each FFN may reach")
    compress.add_argument(
        "--shape",
        choices=("free", "uniform"),
        default=_default("shape"),
        help="uniform: the same heads, KV groups and FFN width in every block (a stock config)",
    )
    compress.add_argument("--ridge", type=float, default=_default("ridge"), help="re-fit ridge strength")
    compress.add_argument("--no-refit", action="store_true", help="cut without re-fitting what survives")
    compress.add_argument("--heads", choices=HEAD_METHODS, default=_default("heads"))
    compress.add_argument("--ffn", choices=FFN_METHODS, default=_default("ffn"))
    compress.add_argument("--eval", dest="eval_set", help="JSONL with answers/labels to measure accuracy")
    compress.add_argument("--gate-steps", type=int, default=_default("gate_steps"))
    compress.add_argument(
        "--recovery-steps", type=int, default=_default("recovery_steps"), help="distillation steps (0: none)"
    )
    compress.add_argument(
        "--recovery-parameters",
        choices=("all", "projector"),
        default=_default("recovery_parameters"),
        help="what recovery trains: all but the embeddings and output head, or a VLM's projector",
    )
    compress.add_argument("--no-latency", action="store_true", help="skip latency measurement")
    compress.set_defaults(func=run_compress)

    demo = commands.add_parser("demo", help="compress the shipped demo VLM and report held-out accuracy")
    demo.add_argument("--target-flops", type=float, default=0.5)
    demo.add_argument("--output", "-o", type=Path, help="artifact directory (default: out/demo-<target>-<time>)")
    demo.add_argument("--heads", choices=HEAD_METHODS, default=_default("heads"))
    demo.add_argument("--ffn", choices=FFN_METHODS, default=_default("ffn"))
    demo.add_argument("--recovery-steps", type=int, default=_default("recovery_steps"))
    demo.add_argument("--threads", type=int, default=_default("threads"))
    demo.add_argument("--json", dest="json_path", type=Path)
    demo.set_defaults(func=run_demo)

    profile = commands.add_parser("profile", help="head scores, FFN spectra and FLOPs, without changes")
    _common(profile)
    profile.set_defaults(func=run_profile)

    gguf = commands.add_parser("export-gguf", help="write a Llama-family artifact as a GGUF file for llama.cpp")
    gguf.add_argument("artifact", type=Path, help="artifact directory (or a plain Llama-family model folder)")
    gguf.add_argument("--output", "-o", type=Path, required=True, help="new .gguf file, outside the artifact")
    gguf.add_argument("--dtype", choices=("f16", "f32"), default="f16", help="matrix precision (default f16)")
    gguf.set_defaults(func=run_export_gguf)

    for entry in entry_points(group="infoprune.commands"):
        entry.load()(commands)
    return parser


def _config(args: argparse.Namespace, **extra: Any) -> CompressionConfig:
    return CompressionConfig(
        scope=args.scope,
        calibration=args.calibration,
        calibration_samples=args.calibration_samples,
        batch_size=args.batch_size,
        threads=args.threads,
        device=args.device,
        validate_scores=args.validate_scores,
        **extra,
    )


def _write_json(path: Path | None, document: dict[str, Any]) -> None:
    if path is not None:
        path.write_text(json.dumps(document, indent=2, default=str))


def run_compress(args: argparse.Namespace) -> int:
    from infoprune_core.pipeline import compress

    budget = {
        "target_flops_ratio": args.target_flops,
        "head_keep_ratio": args.head_keep_ratio,
        "ffn_epsilon": args.ffn_epsilon,
    }
    config = _config(
        args,
        **{k: v for k, v in budget.items() if v is not None},
        heads=args.heads,
        ffn=args.ffn,
        eval_set=args.eval_set,
        gate_steps=args.gate_steps,
        recovery_steps=args.recovery_steps,
        recovery_parameters=args.recovery_parameters,
        shape=args.shape,
        ridge=args.ridge,
        reconstruct=not args.no_refit,
        measure_latency=not args.no_latency,
    )
    bar = ProgressBar()
    try:
        result = compress(args.source, args.output, config, progress=bar)
    finally:
        bar.close()
    print(format_report(result.report))
    print(f"\nwrote {result.output_dir}")
    _write_json(args.json_path, result.report)
    return 0


def run_demo(args: argparse.Namespace) -> int:
    from infoprune_core.demo import demo_calibration_path, demo_eval_path, demo_model_dir

    output = args.output or Path("out") / f"demo-{args.target_flops}-{time.strftime('%Y%m%d-%H%M%S')}"
    forwarded = [
        "compress",
        str(demo_model_dir()),
        "--output",
        str(output),
        "--target-flops",
        str(args.target_flops),
        "--calibration",
        str(demo_calibration_path()),
        "--eval",
        str(demo_eval_path()),
        "--heads",
        args.heads,
        "--ffn",
        args.ffn,
        "--recovery-steps",
        str(args.recovery_steps),
        "--threads",
        str(args.threads),
    ]
    if args.json_path is not None:
        forwarded += ["--json", str(args.json_path)]
    return run_compress(build_parser().parse_args(forwarded))


def run_profile(args: argparse.Namespace) -> int:
    from infoprune_core.profiling import profile

    config = _config(args, target_flops_ratio=1.0)
    bar = ProgressBar()
    try:
        result = profile(args.source, config, progress=bar)
    finally:
        bar.close()
    print(format_profile(result))
    _write_json(args.json_path, result)
    return 0


def run_export_gguf(args: argparse.Namespace) -> int:
    from infoprune_core.export.gguf import export_gguf  # needs the `gguf` extra

    print(f"wrote {export_gguf(args.artifact, args.output, args.dtype)}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except ValidationError as error:
        details = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'config'}: {e['msg']}" for e in error.errors())
        print(f"infoprune: invalid options: {details}", file=sys.stderr)
        return 2
    except InfoPruneError as error:
        print(f"infoprune: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
