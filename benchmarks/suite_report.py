"""Tables, plots and the combined JSON of a target's saved suite cells."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

from benchmarks.suite_cell import METHODS
from benchmarks.suite_targets import Target

OURS = ("infoprune", "infoprune_free")


def load_cells(results: Path, target: str) -> list[dict[str, Any]]:
    folder = results / "suite" / target / "cells"
    return [json.loads(path.read_text()) for path in sorted(folder.glob("*.json"))] if folder.exists() else []


def _quality(row: dict[str, Any], metric: str) -> float | None:
    return row.get("quality", {}).get(metric) if row.get("status") == "ok" else None


def _better(a: float, b: float, higher: bool) -> bool:
    return a > b if higher else a < b


def verdicts(rows: list[dict[str, Any]], target: Target) -> list[dict[str, Any]]:
    """Per (scope, budget): InfoPrune's best quality against the best baseline or peer tool."""
    grouped: dict[tuple[str, float], list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        if row["method"] != "original":
            grouped[(row["scope"], row["budget"])].append(row)
    out = []
    for (scope, budget), cell_rows in sorted(grouped.items(), key=lambda item: (item[0][0], -item[0][1])):
        scored = [(r["method"], _quality(r, target.metric)) for r in cell_rows]
        ours = [(m, q) for m, q in scored if m in OURS and q is not None]
        theirs = [(m, q) for m, q in scored if m not in OURS and q is not None]
        pick = max if target.higher_is_better else min
        best_ours = pick(ours, key=lambda item: item[1]) if ours else None
        best_theirs = pick(theirs, key=lambda item: item[1]) if theirs else None
        win = None
        if best_ours and best_theirs:
            win = not _better(best_theirs[1], best_ours[1], target.higher_is_better)
        gates = next((r for r in cell_rows if r["method"] == "infoprune" and r["status"] == "ok"), None)
        efficiency = gates["speedup"]["batch32"] * gates["total_flops_ratio"] if gates else None
        out.append(
            {
                "scope": scope,
                "budget": budget,
                "ours": best_ours,
                "best_other": best_theirs,
                "infoprune_wins": win,
                # measured speed-up at batch 32 over the whole-model FLOP reduction, trained InfoPrune
                "speedup_over_flop_reduction": efficiency,
            }
        )
    return out


def markdown_table(header: list[str], body: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in body]
    return "\n".join(lines)


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "-"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def markdown(rows: list[dict[str, Any]], target: Target) -> str:
    original = next((r for r in rows if r["method"] == "original" and r["status"] == "ok"), None)
    lines = [f"## {target.name}: {target.description}", ""]
    if original:
        lines.append(
            f"Original: {target.metric} {_fmt(_quality(original, target.metric), 4)}; latency batch 1 "
            f"{original['latency_ms']['batch1']:.1f} ms, batch 32 {original['latency_ms']['batch32']:.1f} ms "
            f"({original['device']}, {original['dtype']}, {original['threads']} thread(s), median of "
            f"{original['repeats']} after {original['warmup']} warm-up); {original['params'] / 1e6:.1f}M params."
        )
        lines.append("")
    arrow = "higher is better" if target.higher_is_better else "lower is better"
    for scope in target.scopes:
        scoped = [r for r in rows if r["scope"] == scope and r["method"] != "original"]
        if not scoped:
            continue
        budgets = sorted({r["budget"] for r in scoped}, reverse=True)
        methods = [m for m in METHODS if any(r["method"] == m for r in scoped)]
        by_key = {(r["method"], r["budget"]): r for r in scoped}
        lines += [f"### scope: {scope} ({target.metric}, {arrow}; speed-up at batch 32 in brackets)", ""]
        header = ["method", *[f"{b:.1f}" for b in budgets]]
        body = []
        for method in methods:
            cells = []
            for budget in budgets:
                row = by_key.get((method, budget))
                if row is None:
                    cells.append("")
                elif row["status"] != "ok":
                    cells.append(row["status"])
                else:
                    cells.append(f"{_quality(row, target.metric):.3f} ({row['speedup']['batch32']:.2f}x)")
            body.append([method, *cells])
        lines += [markdown_table(header, body), ""]
    lines += ["### every cell", ""]
    header = [
        "scope",
        "budget",
        "method",
        "status",
        "FLOPs",
        "params",
        target.metric,
        "speed-up b1",
        "speed-up b32",
        "compress s",
        "peak MB",
    ]
    body = [
        [
            r["scope"],
            _fmt(r["budget"], 2),
            r["method"],
            r["status"],
            _fmt(r.get("flops_ratio")),
            _fmt(r.get("params_ratio")),
            _fmt(_quality(r, target.metric), 4),
            _fmt(r.get("speedup", {}).get("batch1"), 2),
            _fmt(r.get("speedup", {}).get("batch32"), 2),
            _fmt(r.get("compress_seconds"), 0),
            _fmt(r.get("compress_peak_rss_mb"), 0),
        ]
        for r in sorted(
            rows, key=lambda r: (r["scope"], -r["budget"], METHODS.index(r["method"]) if r["method"] in METHODS else -1)
        )
    ]
    lines += [markdown_table(header, body), ""]
    failures = [r for r in rows if r["status"] != "ok"]
    if failures:
        lines += ["Failed or unreachable cells:", ""]
        lines += [f"- {r['scope']} {r['budget']:.2f} {r['method']}: {r.get('error', '')[:300]}" for r in failures]
        lines.append("")
    return "\n".join(lines)


def plot(rows: list[dict[str, Any]], target: Target, folder: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [r for r in rows if r["status"] == "ok" and r["method"] != "original"]
    original = next((r for r in rows if r["method"] == "original" and r["status"] == "ok"), None)
    scopes = [s for s in target.scopes if any(r["scope"] == s for r in ok)]
    if not scopes:
        return []
    figure, axes = plt.subplots(1, len(scopes), figsize=(5.5 * len(scopes), 4.2), squeeze=False)
    for axis, scope in zip(axes[0], scopes, strict=True):
        for method in METHODS:
            points = sorted(
                (r["flops_ratio"], _quality(r, target.metric))
                for r in ok
                if r["scope"] == scope and r["method"] == method
            )
            if points:
                style = "-o" if method in OURS else "--."
                axis.plot(*zip(*points, strict=True), style, label=method, linewidth=2 if method in OURS else 1)
        if original:
            axis.plot([1.0], [_quality(original, target.metric)], "k*", markersize=12, label="original")
        axis.set(title=f"{target.name}: {scope}", xlabel="FLOPs kept (fraction of scope)", ylabel=target.metric)
        axis.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    figure.tight_layout()
    pareto = folder / f"{target.name}_pareto.png"
    figure.savefig(pareto, dpi=110)
    plt.close(figure)

    figure, axis = plt.subplots(figsize=(6, 4.5))
    for method in METHODS:
        points = [(1 / r["total_flops_ratio"], r["speedup"]["batch32"]) for r in ok if r["method"] == method]
        if points:
            axis.plot(*zip(*points, strict=True), "o" if method in OURS else ".", label=method)
    limit = max([1 / r["total_flops_ratio"] for r in ok] + [1.5])
    axis.plot([1, limit], [1, limit], "k-", linewidth=0.8, label="speed-up = FLOP reduction")
    axis.plot([1, limit], [0.7, 0.7 * limit], "k:", linewidth=0.8, label="0.7x of the FLOP reduction")
    axis.set(
        title=f"{target.name}: measured speed-up (batch 32) vs whole-model FLOP reduction",
        xlabel="FLOP reduction (original / compressed, whole model)",
        ylabel="measured speed-up",
    )
    axis.grid(alpha=0.3)
    axis.legend(fontsize=7)
    figure.tight_layout()
    speed = folder / f"{target.name}_speedup.png"
    figure.savefig(speed, dpi=110)
    plt.close(figure)
    return [pareto, speed]


def write_report(results: Path, target: Target) -> str:
    rows = load_cells(results, target.name)
    folder = results / "suite"
    if not rows:
        return f"{target.name}: no saved cells"
    document = {
        "target": target.name,
        "description": target.description,
        "metric": target.metric,
        "higher_is_better": target.higher_is_better,
        "verdicts": verdicts(rows, target),
        "cells": rows,
    }
    (folder / f"{target.name}.json").write_text(json.dumps(document, indent=1))
    text = markdown(rows, target)
    (folder / f"{target.name}.md").write_text(text)
    plot(rows, target, folder)
    return text


def summary_markdown(results: Path, targets: list[Target]) -> str:
    """One row per (target, scope, budget): InfoPrune's best against the best baseline or peer tool."""
    header = [
        "target",
        "scope",
        "FLOPs kept",
        "metric",
        "InfoPrune best",
        "best baseline / peer",
        "InfoPrune wins",
        "speed-up b32 / FLOP reduction (gates)",
    ]
    body = []
    for target in targets:
        for verdict in verdicts(load_cells(results, target.name), target):
            ours, other = verdict["ours"], verdict["best_other"]
            body.append(
                [
                    target.name,
                    verdict["scope"],
                    _fmt(verdict["budget"], 2),
                    target.metric,
                    f"{ours[0]} {ours[1]:.3f}" if ours else "-",
                    f"{other[0]} {other[1]:.3f}" if other else "-",
                    {True: "yes", False: "**no**", None: "-"}[verdict["infoprune_wins"]],
                    _fmt(verdict["speedup_over_flop_reduction"], 2),
                ]
            )
    return markdown_table(header, body)
