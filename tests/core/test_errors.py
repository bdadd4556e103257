"""Bad input gives a clear error naming what is accepted."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from pydantic import ValidationError

from infoprune_core import CompressionConfig, compress
from infoprune_core.calibration import read_samples
from infoprune_core.errors import BudgetError, CalibrationError, SourceError, UnsupportedModelError

FAST = dict(gate_steps=2, recovery_steps=0, measure_latency=False, calibration_samples=8, held_out_samples=2)


def test_unknown_model_type_names_the_supported_ones(model_dirs, tmp_path: Path) -> None:
    target = tmp_path / "gpt"
    shutil.copytree(model_dirs["bert"], target)
    config = json.loads((target / "config.json").read_text())
    config["model_type"] = "gpt_neox"
    (target / "config.json").write_text(json.dumps(config))
    with pytest.raises(UnsupportedModelError, match=r"gpt_neox.*supported: .*llama"):
        compress(str(target), tmp_path / "out", CompressionConfig(target_flops_ratio=0.5, **FAST))
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("budget", [0.0, -0.1, 1.5])
def test_budget_out_of_range(budget: float) -> None:
    with pytest.raises(ValidationError):
        CompressionConfig(target_flops_ratio=budget)


def test_budget_required_and_exclusive() -> None:
    with pytest.raises(ValidationError, match="budget is required"):
        CompressionConfig()
    with pytest.raises(ValidationError, match="not both"):
        CompressionConfig(target_flops_ratio=0.5, head_keep_ratio=0.5)


def test_unreachable_budget_says_what_is_reachable(model_dirs, tmp_path: Path) -> None:
    """Heads alone cannot reach 0.3 (embeddings, LM head and FFNs stay); the error names the closest
    reachable ratio, and that ratio is honest: a little above it works, a little below it does not."""
    below_fixed = CompressionConfig(target_flops_ratio=0.3, ffn="none", **FAST)
    with pytest.raises(BudgetError, match=r"parts that are not compressed already cost 0\.\d+") as error:
        compress(str(model_dirs["llama"]), tmp_path / "out", below_fixed)
    reachable = float(re.search(r"closest reachable is (0\.\d+)", str(error.value)).group(1))
    assert 0.3 < reachable < 1.0
    with pytest.raises(BudgetError, match="closest reachable"):
        compress(
            str(model_dirs["llama"]),
            tmp_path / "out",
            CompressionConfig(target_flops_ratio=reachable - 0.03, ffn="none", **FAST),
        )
    assert not (tmp_path / "out").exists(), "nothing is written on failure"
    report = compress(
        str(model_dirs["llama"]),
        tmp_path / "out",
        CompressionConfig(target_flops_ratio=reachable + 0.005, ffn="none", **FAST),
    ).report
    assert report["flops"]["scope_ratio"] <= reachable + 0.005 + 0.02


def test_scope_without_anything_to_compress(model_dirs, tmp_path: Path) -> None:
    config = CompressionConfig(target_flops_ratio=0.5, scope=("vision",), **FAST)
    with pytest.raises(BudgetError, match="nothing to compress"):
        compress(str(model_dirs["bert"]), tmp_path / "out", config)


def test_empty_calibration_set(model_dirs, tmp_path: Path) -> None:
    (tmp_path / "empty.jsonl").write_text("\n")
    (tmp_path / "images").mkdir()
    for source in (tmp_path / "empty.jsonl", tmp_path / "images"):
        config = CompressionConfig(target_flops_ratio=0.5, calibration=str(source), **FAST)
        with pytest.raises(CalibrationError, match="no samples"):
            compress(str(model_dirs["bert"]), tmp_path / "out", config)


def test_calibration_paths_cannot_escape(tmp_path: Path) -> None:
    (tmp_path / "set.jsonl").write_text(json.dumps({"image": "../secret.png", "text": "x"}) + "\n")
    with pytest.raises(CalibrationError, match="leaves the folder"):
        read_samples(tmp_path / "set.jsonl")
    (tmp_path / "bad.jsonl").write_text("{not json\n")
    with pytest.raises(CalibrationError, match="not valid JSON"):
        read_samples(tmp_path / "bad.jsonl")


def test_missing_source_and_occupied_output(model_dirs, tmp_path: Path) -> None:
    with pytest.raises(SourceError):
        compress(str(tmp_path / "missing"), tmp_path / "out", CompressionConfig(target_flops_ratio=0.5, **FAST))
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "file").write_text("x")
    with pytest.raises(Exception, match="already exists"):
        compress(str(model_dirs["bert"]), tmp_path / "taken", CompressionConfig(target_flops_ratio=0.5, **FAST))
    assert (tmp_path / "taken" / "file").read_text() == "x"


def test_artifact_cannot_be_compressed_again(model_dirs, tmp_path: Path) -> None:
    compress(str(model_dirs["bert"]), tmp_path / "once", CompressionConfig(target_flops_ratio=0.7, **FAST))
    with pytest.raises(SourceError, match="already an InfoPrune artifact"):
        compress(str(tmp_path / "once"), tmp_path / "twice", CompressionConfig(target_flops_ratio=0.7, **FAST))
