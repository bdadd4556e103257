"""The report views in the browser on hand-made reports: the heatmap reads heads and FFN structure keyed by
module path, skips what is missing or malformed, and renders every string as text (no markup injection)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.ui.conftest import Dashboard, Traffic

STATIC = Path(__file__).resolve().parents[2] / "api" / "ui" / "static"
HOSTILE = '<img src=x onerror="window.pwned=1">'
REPORT = {
    "heads": {
        "method": HOSTILE,
        "layers": {
            "enc.layers.0.attn": {"num_heads": 4, "kept": [0, 1], "part": "vision"},
            "enc.layers.1.attn": {"num_heads": 4, "kept": [0, 1, 2, 3], "part": "vision"},
            f"{HOSTILE}.blocks.0.attn": {"num_heads": 2},  # no "kept": not pruned
            "broken.layers.0.attn": {"kept": [1]},  # no num_heads: skipped
        },
    },
    "ffn": {
        "method": "width",
        "widths": {"enc.layers.0.mlp": 64, "enc.layers.1.mlp": "wide"},
        "ranks": {"enc.layers.1.mlp.fc1": 12},
    },
    "flops": {"before": {"total": 10}},  # partial
    "stages_seconds": {HOSTILE: 1.5},
}
RENDER = """async (report) => {
  const { heatmap } = await import("/ui/static/js/heatmap.js");
  const { reportSections } = await import("/ui/static/js/report.js");
  const box = document.createElement("div");
  box.append(heatmap(report), ...reportSections(report).filter(Boolean));
  document.body.append(box);
  return {
    cells: [...box.querySelectorAll(".cell")].map((c) =>
      [c.dataset.row, Number(c.dataset.index), c.querySelector("text").textContent]),
    captions: [...box.querySelectorAll("figcaption")].map((c) => c.textContent),
    notes: [...box.querySelectorAll(".note")].map((n) => n.textContent),
    text: box.textContent,
    images: document.querySelectorAll("img").length,
    pwned: window.pwned === 1,
  };
}"""


def test_heatmap_reads_structure_by_module_path_and_escapes_strings(
    page: Any, dashboard: Dashboard, traffic: Traffic
) -> None:
    page.goto(f"{dashboard.base}/ui")
    out = page.evaluate(RENDER, REPORT)
    assert sorted(map(tuple, out["cells"])) == [
        ("FFN rank · fc1", 1, "12"),
        ("FFN width", 0, "64"),  # "wide" is not a number: skipped
        ("heads kept", 0, "2/2"),
        ("heads kept", 0, "2/4"),
        ("heads kept", 1, "4/4"),
    ]
    assert any(HOSTILE in caption for caption in out["captions"])  # shown as text
    assert HOSTILE in out["text"] and out["images"] == 0 and not out["pwned"]
    assert out["notes"] == []
    empty = page.evaluate(RENDER, {})
    assert empty["cells"] == [] and empty["notes"] == ["This report has no per-layer structure."]
    assert traffic.problems == []


def test_the_dashboard_code_has_no_html_sinks() -> None:
    sinks = ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function")
    sources = list(STATIC.rglob("*.js"))
    assert len(sources) >= 5
    for source in sources:
        text = source.read_text()
        assert not [s for s in sinks if s in text], source
