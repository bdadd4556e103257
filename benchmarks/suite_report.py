"""Tables, plots and the combined JSON of a target's saved suite cells.

Cells of the same (scope, budget, method, recovery) over several calibration seeds are aggregated to a
mean and a standard deviation. A verdict compares InfoPrune's default with the best other method at
the same budget and recovery: the margin, the noise (the standard deviation of the difference over
seeds, plus for an accuracy the binomial sampling error of its questions), and "win", "tie" (the
margin within twice the noise, about a 95% interval) or "loss"; with one seed and no sampling error
the noise is unknown and the verdict says so.
"""

from __future__ import annotations

import json
import statistics
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.suite_cell import METHODS, OURS
from benchmarks.suite_targets import Target


def load_cells(results: Path, target: str) -> list[dict[str, Any]]:
    folder = results / "suite" / target / "cells"
    return [json.loads(path.read_text()) for path in sorted(folder.glob("*.json"))] if folder.exists() else []


def _quality(row: dict[str, Any], metric: str) -> float | None:
    return row.get("quality", {}).get(metric) if row.get("status") == "ok" else None


@dataclass
class Aggregate:
    """One method at one (scope, budget, recovery) over its seeds."""

    method: str
    recovery: bool
    values: list[float]
    rows: list[dict[str, Any]]
    failures: list[dict[str, Any]]

    @property
    def label(self) -> str:
        return self.method + (" +rec" if self.recovery else "")

    @property
    def mean(self) -> float | None:
        return statistics.fmean(self.values) if self.values else None

    @property
    def std(self) -> float | None:
        return statistics.stdev(self.values) if len(self.values) >= 2 else None

    def mean_of(self, key: str, sub: str | None = None) -> float | None:
        values = [r[key] if sub is None else r[key][sub] for r in self.rows if r.get(key) is not None]
        return statistics.fmean(values) if values else None

    def text(self, digits: int = 3) -> str:
        if self.mean is None:
            return self.failures[0]["status"] if self.failures else ""
        spread = f" ± {self.std:.{digits}f}" if self.std is not None else ""
        speed = self.mean_of("speedup", "batch32")
        return f"{self.mean:.{digits}f}{spread}" + (f" ({speed:.2f}x)" if speed is not None else "")


def aggregate(rows: list[dict[str, Any]], metric: str) -> dict[tuple[str, float, bool], list[Aggregate]]:
    """(scope, budget, recovery) -> one Aggregate per method, in METHODS order."""
    grouped: dict[tuple[str, float, bool, str], list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        if row["method"] != "original":
            grouped[(row["scope"], row["budget"], bool(row.get("recovery")), row["method"])].append(row)
    out: dict[tuple[str, float, bool], list[Aggregate]] = defaultdict(list)
    for (scope, budget, recovery, method), cell_rows in grouped.items():
        ok = [r for r in cell_rows if _quality(r, metric) is not None]
        failed = [r for r in cell_rows if _quality(r, metric) is None]
        out[(scope, budget, recovery)].append(
            Aggregate(method, recovery, [_quality(r, metric) for r in ok], ok, failed)  # type: ignore[misc]
        )
    for entries in out.values():
        entries.sort(key=lambda a: METHODS.index(a.method) if a.method in METHODS else len(METHODS))
    return out


def verdicts(rows: list[dict[str, Any]], target: Target) -> list[dict[str, Any]]:
    """Per (scope, budget, recovery): the default against the best other method, with margin and noise."""
    sign = 1.0 if target.higher_is_better else -1.0
    out = []
    for (scope, budget, recovery), entries in sorted(
        aggregate(rows, target.metric).items(), key=lambda i: (i[0][0], -i[0][1], i[0][2])
    ):
        ours = next((a for a in entries if a.method == OURS and a.mean is not None), None)
        others = [a for a in entries if a.method != OURS and a.mean is not None]
        best = max(others, key=lambda a: sign * a.mean) if others else None  # type: ignore[operator]
        verdict: dict[str, Any] = {"scope": scope, "budget": budget, "recovery": recovery}
        if ours is not None:
            verdict["ours"] = [ours.label, ours.mean, ours.std, len(ours.values)]
            speed = ours.mean_of("speedup", "batch32")
            total = ours.mean_of("total_flops_ratio")
            verdict["speedup_over_flop_reduction"] = None if speed is None or total is None else speed * total
        if best is not None:
            verdict["best_other"] = [best.label, best.mean, best.std, len(best.values)]
        if ours is not None and best is not None:
            assert ours.mean is not None and best.mean is not None
            margin = sign * (ours.mean - best.mean)
            noise = _noise(ours, best, target)
            verdict["margin"] = margin
            verdict["noise"] = noise
            if noise is None:
                verdict["outcome"] = ("win" if margin > 0 else "tie" if margin == 0 else "loss") + " (one seed)"
            else:
                verdict["outcome"] = "tie" if abs(margin) <= 2 * noise else ("win" if margin > 0 else "loss")
        out.append(verdict)
    return out


def _noise(ours: Aggregate, other: Aggregate, target: Target) -> float | None:
    """Standard deviation of the difference: over seeds, plus an accuracy's sampling error."""
    variance = 0.0 if ours.std is None or other.std is None else ours.std**2 + other.std**2
    if target.questions:
        variance += sum(a.mean * (1 - a.mean) / target.questions for a in (ours, other) if a.mean is not None)
    elif ours.std is None or other.std is None:
        return None
    return variance**0.5


def markdown_table(header: list[str], body: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in body]
    return "\n".join(lines)


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "-"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def _original_line(original: dict[str, Any], target: Target) -> str:
    return (
        f"Original: {target.metric} {_fmt(_quality(original, target.metric), 4)}; latency batch 1 "
        f"{original['latency_ms']['batch1']:.1f} ms, batch 32 {original['latency_ms']['batch32']:.1f} ms "
        f"({original['device']}, {original['dtype']}, {original['threads']} thread(s), median of "
        f"{original['repeats']} after {original['warmup']} warm-up); {original['params'] / 1e6:.1f}M params."
    )


def markdown(rows: list[dict[str, Any]], target: Target) -> str:
    original = next((r for r in rows if r["method"] == "original" and r["status"] == "ok"), None)
    lines = [f"## {target.name}: {target.description}", ""]
    if original:
        lines += [_original_line(original, target), ""]
    arrow = "higher is better" if target.higher_is_better else "lower is better"
    groups = aggregate(rows, target.metric)
    for scope in target.scopes:
        keys = sorted({(b, r) for s, b, r in groups if s == scope}, key=lambda k: (-k[0], k[1]))
        if not keys:
            continue
        budgets = sorted({b for b, _ in keys}, reverse=True)
        lines += [
            f"### scope: {scope} ({target.metric}, {arrow}; mean ± std over seeds, speed-up at batch 32 in brackets)",
            "",
        ]
        labels: dict[str, dict[float, Aggregate]] = defaultdict(dict)
        for budget, recovery in keys:
            for entry in groups[(scope, budget, recovery)]:
                labels[entry.label][budget] = entry
        order = sorted(labels, key=lambda lab: (" +rec" in lab, METHODS.index(lab.split(" ")[0])))
        header = ["method", *[f"{b:.1f}" for b in budgets]]
        body = [[label, *[labels[label][b].text() if b in labels[label] else "" for b in budgets]] for label in order]
        lines += [markdown_table(header, body), ""]
    lines += ["### verdicts: the default against the best other method", ""]
    body = [
        [
            v["scope"],
            _fmt(v["budget"], 2),
            "yes" if v["recovery"] else "no",
            f"{v['ours'][0]} {_fmt(v['ours'][1])}" if "ours" in v else "-",
            f"{v['best_other'][0]} {_fmt(v['best_other'][1])}" if "best_other" in v else "-",
            _fmt(v.get("margin")),
            _fmt(v.get("noise")),
            v.get("outcome", "-"),
        ]
        for v in verdicts(rows, target)
    ]
    lines += [
        markdown_table(["scope", "budget", "recovery", "default", "best other", "margin", "noise", "outcome"], body),
        "",
    ]
    lines += ["### every cell", ""]
    header = [
        "scope",
        "budget",
        "method",
        "rec",
        "seed",
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
            "yes" if r.get("recovery") else "no",
            r.get("seed", 0),
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
            rows,
            key=lambda r: (
                r["scope"],
                -r["budget"],
                bool(r.get("recovery")),
                METHODS.index(r["method"]) if r["method"] in METHODS else -1,
                r.get("seed", 0),
            ),
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

    groups = aggregate(rows, target.metric)
    original = next((r for r in rows if r["method"] == "original" and r["status"] == "ok"), None)
    scopes = [s for s in target.scopes if any(key[0] == s for key in groups)]
    if not scopes:
        return []
    figure, axes = plt.subplots(1, len(scopes), figsize=(5.5 * len(scopes), 4.2), squeeze=False)
    for axis, scope in zip(axes[0], scopes, strict=True):
        series: dict[str, list[tuple[float, float, float]]] = defaultdict(list)
        for (s, _, _), entries in groups.items():
            if s != scope:
                continue
            for entry in entries:
                flops = entry.mean_of("flops_ratio")
                if entry.mean is not None and flops is not None:
                    series[entry.label].append((flops, entry.mean, entry.std or 0.0))
        for label, points in sorted(series.items()):
            points.sort()
            ours = label.split(" ")[0] == OURS
            xs, ys, errors = zip(*points, strict=True)
            axis.errorbar(xs, ys, yerr=errors, fmt="-o" if ours else "--.", label=label, linewidth=2 if ours else 1)
        if original:
            axis.plot([1.0], [_quality(original, target.metric)], "k*", markersize=12, label="original")
        axis.set(title=f"{target.name}: {scope}", xlabel="FLOPs kept (fraction of scope)", ylabel=target.metric)
        if not target.higher_is_better:
            axis.set_yscale("log")
        axis.grid(alpha=0.3)
    axes[0][0].legend(fontsize=6)
    figure.tight_layout()
    pareto = folder / f"{target.name}_pareto.png"
    figure.savefig(pareto, dpi=110)
    plt.close(figure)

    ok = [r for r in rows if r["status"] == "ok" and r["method"] != "original"]
    figure, axis = plt.subplots(figsize=(6, 4.5))
    for method in METHODS:
        measured = [(1 / r["total_flops_ratio"], r["speedup"]["batch32"]) for r in ok if r["method"] == method]
        if measured:
            axis.plot(*zip(*measured, strict=True), "o" if method == OURS else ".", label=method)
    limit = max([1 / r["total_flops_ratio"] for r in ok] + [1.5])
    axis.plot([1, limit], [1, limit], "k-", linewidth=0.8, label="speed-up = FLOP reduction")
    axis.plot([1, limit], [0.8, 0.8 * limit], "k:", linewidth=0.8, label="0.8x of the FLOP reduction")
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
    """One row per (target, scope, budget, recovery): the default against the best other method."""
    header = [
        "target",
        "scope",
        "FLOPs kept",
        "recovery",
        "metric",
        "default (mean, seeds)",
        "best other",
        "margin",
        "noise",
        "outcome",
        "speed-up b32 / FLOP reduction",
    ]
    body = []
    for target in targets:
        for v in verdicts(load_cells(results, target.name), target):
            ours, other = v.get("ours"), v.get("best_other")
            body.append(
                [
                    target.name,
                    v["scope"],
                    _fmt(v["budget"], 2),
                    "yes" if v["recovery"] else "no",
                    target.metric,
                    f"{_fmt(ours[1])} ({ours[3]})" if ours else "-",
                    f"{other[0]} {_fmt(other[1])} ({other[3]})" if other else "-",
                    _fmt(v.get("margin")),
                    _fmt(v.get("noise")),
                    v.get("outcome", "-"),
                    _fmt(v.get("speedup_over_flop_reduction"), 2),
                ]
            )
    return markdown_table(header, body)
