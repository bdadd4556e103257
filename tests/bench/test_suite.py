"""The benchmark suite's cell, evaluators and report on the shipped demo model and tiny models."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from benchmarks.evaluators import (
    embedding_quality,
    perplexity,
    perplexity_windows,
    sentence_embeddings,
)
from benchmarks.suite import cell_path
from benchmarks.suite_cell import CellSpec, run_cell
from benchmarks.suite_report import verdicts, write_report
from benchmarks.suite_targets import TARGETS
from infoprune_core.calibration import Encoder
from infoprune_core.calibration.samples import reference_paragraphs
from infoprune_core.modeling import load_model
from tests.core.tiny_models import FAMILIES, save_with_processor

SPEC = CellSpec(target="demo", method="l1", budget=0.5, scope="both", repeats=1, warmup=0, calibration_samples=16)


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny")
    return {name: save_with_processor(FAMILIES[name](), root / name) for name in ("bert", "llama")}


@pytest.fixture(scope="module")
def demo_cells() -> list[dict]:
    torch.set_num_threads(1)
    return [run_cell(replace(SPEC, method="original", budget=1.0)), run_cell(SPEC)]


def test_a_cell_meets_the_budget_and_measures_everything(demo_cells: list[dict]) -> None:
    original, cell = demo_cells
    assert original["status"] == "ok" and cell["status"] == "ok", cell.get("error")
    assert original["flops_ratio"] == pytest.approx(1.0)
    assert abs(cell["flops_ratio"] - 0.5) <= 0.02
    assert cell["params_ratio"] < 0.8
    assert 0.0 <= cell["quality"]["accuracy"] <= original["quality"]["accuracy"] + 0.01
    assert set(cell["latency_ms"]) == {"batch1", "batch32"}
    assert all(value > 0 for value in cell["speedup"].values())
    assert cell["compress_seconds"] > 0 and cell["compress_peak_rss_mb"] > 0


def test_an_unreachable_budget_is_reported_not_raised() -> None:
    cell = run_cell(replace(SPEC, method="default", budget=0.02, scope="vision"))
    assert cell["status"] == "unreachable"
    assert "reach" in cell["error"]


def test_report_writes_tables_plots_and_verdicts(demo_cells: list[dict], tmp_path: Path) -> None:
    accuracy = demo_cells[1]["quality"]["accuracy"]

    def cell(method: str, value: float, seed: int = 0) -> dict:
        return {**demo_cells[1], "method": method, "seed": seed, "quality": {"accuracy": value}}

    rows = [demo_cells[0], demo_cells[1], cell("random", accuracy - 0.1), cell("default", accuracy)]
    for row in rows:
        spec = replace(SPEC, method=row["method"], budget=row["budget"], seed=row.get("seed", 0))
        path = cell_path(tmp_path, spec)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(row))
    text = write_report(tmp_path, TARGETS["demo"])
    assert "| l1 |" in text and "| default |" in text
    folder = tmp_path / "suite"
    assert (folder / "demo_pareto.png").stat().st_size > 0 and (folder / "demo_speedup.png").stat().st_size > 0
    (verdict,) = json.loads((folder / "demo.json").read_text())["verdicts"]
    # default ties l1 (same accuracy) and beats random; one seed, but the 400 questions' sampling error is known.
    assert verdict["outcome"] == "tie" and verdict["best_other"][0] == "l1"
    assert verdicts([*rows[:3], cell("default", 0.0)], TARGETS["demo"])[0]["outcome"] == "loss"
    # Two questions of 400 apart is within the sampling error: a tie, not a loss.
    close = [cell("default", 0.9925), cell("l1", 0.9975)]
    assert verdicts(close, TARGETS["demo"])[0]["outcome"] == "tie"
    # Over seeds, a margin inside the seeds' spread is a tie, one outside it a win.
    noisy = [cell("default", v, s) for v, s in ((0.90, 1), (0.94, 2))] + [
        cell("l1", v, s) for v, s in ((0.91, 1), (0.92, 2))
    ]
    assert verdicts(noisy, TARGETS["demo"])[0]["outcome"] == "tie"
    clear = [cell("default", v, s) for v, s in ((0.95, 1), (0.96, 2))] + [
        cell("l1", v, s) for v, s in ((0.80, 1), (0.81, 2))
    ]
    (won,) = verdicts(clear, TARGETS["demo"])
    assert won["outcome"] == "win" and won["margin"] == pytest.approx(0.15) and won["noise"] < 0.03


def test_reference_text_is_real_prose_in_a_fixed_order() -> None:
    first, again = reference_paragraphs(64), reference_paragraphs(64)
    assert first == again and len(set(first)) == 64
    assert all(len(p.split()) >= 12 and "::=" not in p for p in first)


def test_embedding_quality_is_perfect_for_the_original_and_drops_for_noise(model_dirs: dict[str, Path]) -> None:
    loaded = load_model(model_dirs["bert"])
    encoder = Encoder(loaded.processor, "text", 32)
    texts = reference_paragraphs(24)
    reference = sentence_embeddings(loaded.model, encoder, texts, 8)
    same = embedding_quality(loaded.model, reference, encoder, texts, 8)
    assert same["similarity_spearman"] == pytest.approx(1.0) and same["neighbour_agreement"] == 1.0
    with torch.no_grad():
        for parameter in loaded.model.parameters():
            parameter.add_(torch.randn_like(parameter) * parameter.std().clamp_min(1e-3))
    noisy = embedding_quality(loaded.model, reference, encoder, texts, 8)
    assert noisy["similarity_spearman"] < 0.99 and noisy["embedding_cosine"] < same["embedding_cosine"]


def test_perplexity_is_finite_and_worse_for_a_damaged_model(model_dirs: dict[str, Path]) -> None:
    loaded = load_model(model_dirs["llama"])
    tokenizer = Encoder(loaded.processor, "text", 32).tokenizer
    windows = perplexity_windows(tokenizer, reference_paragraphs(40), windows=4, length=16)
    assert windows.shape == (4, 16)
    before = perplexity(loaded.model, windows, 2)["perplexity"]
    with torch.no_grad():
        loaded.model.lm_head.weight.mul_(0.0)
    after = perplexity(loaded.model, windows, 2)["perplexity"]
    assert 1.0 < before < float("inf")
    assert after == pytest.approx(loaded.model.config.vocab_size, rel=1e-3)  # uniform logits


def test_a_seeded_calibration_subset_is_another_draw_of_the_same_set(tmp_path: Path) -> None:
    from benchmarks.suite_cell import calibration_subset
    from infoprune_core.calibration import read_samples

    target = TARGETS["demo"]
    first = read_samples(calibration_subset(target, replace(SPEC, seed=1), tmp_path))
    assert len(first) == SPEC.calibration_samples + 16 and all(s.image and s.image.exists() for s in first)
    other = tmp_path / "other"
    other.mkdir()
    second = read_samples(calibration_subset(target, replace(SPEC, seed=2), other))
    assert [s.text for s in first] != [s.text for s in second] or [s.image.read_bytes() for s in first] != [
        s.image.read_bytes() for s in second
    ]
    assert calibration_subset(target, SPEC, tmp_path) == target.calibration()
