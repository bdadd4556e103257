"""Plain-text tables of a compression report and a profile, for the terminal."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

PARTS = ("vision", "projector", "language", "total")


def table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[str(c) for c in header]] + [[_cell(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = [
        "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True)))
        for row in cells
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "-" if value is None else str(value)


def _ratio(after: float, before: float) -> float | None:
    return after / before if before else None


def format_report(report: dict[str, Any]) -> str:
    flops, params = report["flops"], report["params"]
    rows = [
        [
            part,
            params["before"][part] / 1e6,
            params["after"][part] / 1e6,
            flops["before"][part] / 1e6,
            flops["after"][part] / 1e6,
            _ratio(flops["after"][part], flops["before"][part]),
        ]
        for part in PARTS
        if params["before"][part] or flops["before"][part]
    ]
    sections = [
        f"model {report['model']['source']} ({report['model']['model_type']}), scope {', '.join(report['scope'])}",
        table(["part", "params M before", "params M after", "MFLOPs before", "MFLOPs after", "FLOPs ratio"], rows),
        f"scope FLOPs ratio {flops['scope_ratio']:.3f} (target {_cell(flops['target_scope_ratio'])})",
    ]
    latency = report["latency"]
    if latency.get("measured"):
        sections.append(
            f"latency ({latency['device']}, {latency['threads']} thread(s), batch {latency['batch']}): "
            f"{latency['before']['median_ms']:.1f} ms -> {latency['after']['median_ms']:.1f} ms, "
            f"speed-up {latency['speedup']:.2f}x"
        )
    other = report.get("fidelity_other") or {}
    fidelity_rows = [
        [f"{stage}{suffix}", values.get("kind"), values["divergence"], values["cosine"], values.get("top1_agreement")]
        for suffix, fidelities in (("", report["fidelity"]), (f" ({other.get('source')})", other))
        for stage, values in fidelities.items()
        if isinstance(values, dict)
    ]
    sections.append(table(["fidelity", "kind", "divergence", "cosine", "top-1 agreement"], fidelity_rows))
    recovery = report.get("recovery")
    if isinstance(recovery, dict) and "kept" in recovery:
        held_out = recovery.get("held_out_divergence") or {}
        sections.append(
            f"recovery: {recovery['steps']} steps, held-out divergence {_cell(held_out.get('before'))} -> "
            f"{_cell(held_out.get('distilled'))}: distilled weights "
            + ("kept" if recovery["kept"] else "discarded (further from the original)")
        )
    if "accuracy" in report:
        accuracy = report["accuracy"]
        stages = [k for k in ("before", "after_compression", "after_recovery") if k in accuracy]
        sections.append(
            table(["accuracy", *stages], [[f"{accuracy['samples']} samples", *[accuracy[k] for k in stages]]])
        )
    head_rows = [
        [name, layer["num_heads"], len(layer.get("kept", range(layer["num_heads"])))]
        for name, layer in report["heads"]["layers"].items()
    ]
    if head_rows:
        sections.append(table(["attention block", "heads", "kept"], head_rows))
    ffn = report["ffn"]
    if ffn.get("epsilon") is not None:
        sections.append(f"FFN {ffn['method']}: epsilon {ffn['epsilon']:.4f}")
    if "score_validation" in report:
        sections.append(
            table(
                ["score", "Spearman vs ablation"],
                sorted(report["score_validation"]["spearman"].items(), key=lambda kv: -kv[1]),
            )
        )
    sections.append(table(["stage", "seconds"], list(report["stages_seconds"].items())))
    return "\n\n".join(sections)


def format_profile(result: dict[str, Any]) -> str:
    rows = []
    for name, layer in result["layers"].items():
        for head, erank in enumerate(layer["erank"]):
            rows.append(
                [name if head == 0 else "", head, erank, layer["score_paper"][head], layer["score_scale_aware"][head]]
            )
    sections = [
        f"model {result['model']['source']} ({result['model']['model_type']}), input {result['input']}",
        table(
            ["part", "params M", "MFLOPs"],
            [[p, result["params"][p] / 1e6, result["flops"][p] / 1e6] for p in PARTS if result["params"][p]],
        ),
        table(["attention block", "head", "eRank", "S_h (paper)", "S_h (scale-aware)"], rows),
        table(
            ["FFN linear", "shape", "eRank", "rank@KS 0.05", "break-even rank"],
            [
                [path, "x".join(map(str, s["shape"])), s["erank"], s["rank_at_ks"]["0.05"], s["break_even_rank"]]
                for path, s in result["ffn_spectra"].items()
            ],
        ),
    ]
    if "score_validation" in result:
        sections.append(
            table(
                ["score", "Spearman vs ablation"],
                sorted(result["score_validation"]["spearman"].items(), key=lambda kv: -kv[1]),
            )
        )
    return "\n\n".join(sections)
