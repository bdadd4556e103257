"""The `infoprune` command as a user runs it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from infoprune_core.cli import main


def test_compress_prints_report_and_writes_json(model_dirs, tmp_path: Path, capsys) -> None:
    code = main(
        [
            "compress",
            str(model_dirs["llama"]),
            "--output",
            str(tmp_path / "out"),
            "--target-flops",
            "0.5",
            "--gate-steps",
            "4",
            "--recovery-steps",
            "2",
            "--json",
            str(tmp_path / "report.json"),
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "scope FLOPs ratio" in printed and "speed-up" in printed
    report = json.loads((tmp_path / "report.json").read_text())
    assert abs(report["flops"]["scope_ratio"] - 0.5) <= 0.02
    # whether distillation was kept is said, so discarded steps are not mistaken for a recovered model
    outcome = "kept" if report["recovery"]["kept"] else "discarded"
    assert f"distilled weights {outcome}" in printed


def test_method_options_reach_the_pipeline(model_dirs, tmp_path: Path) -> None:
    options = ["--shape", "uniform", "--ridge", "0.3", "--no-refit", "--recovery-steps", "0", "--no-latency"]
    out, report = tmp_path / "out", tmp_path / "report.json"
    arguments = ["compress", str(model_dirs["llama"]), "-o", str(out), "--target-flops", "0.6", *options]
    assert main([*arguments, "--json", str(report)]) == 0
    applied = json.loads(report.read_text())["config"]
    assert (applied["shape"], applied["ridge"], applied["reconstruct"]) == ("uniform", 0.3, False)
    assert json.loads((out / "infoprune.json").read_text())["plain_from_pretrained"] is True


def test_profile_prints_scores(model_dirs, tmp_path: Path, capsys) -> None:
    assert main(["profile", str(model_dirs["bert"]), "--json", str(tmp_path / "p.json")]) == 0
    printed = capsys.readouterr().out
    assert "eRank" in printed and "break-even rank" in printed
    profile = json.loads((tmp_path / "p.json").read_text())
    assert len(profile["layers"]) == 2 and profile["flops"]["total"] > 0


def test_errors_are_one_clear_line(tmp_path: Path, capsys) -> None:
    assert main(["compress", str(tmp_path / "missing"), "-o", str(tmp_path / "o"), "--target-flops", "0.5"]) == 1
    assert "does not exist" in capsys.readouterr().err
    assert main(["compress", str(tmp_path), "-o", str(tmp_path / "o"), "--target-flops", "7"]) == 2
    assert "target_flops_ratio" in capsys.readouterr().err


def test_console_script_is_installed() -> None:
    result = subprocess.run([Path(sys.executable).parent / "infoprune", "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "compress" in result.stdout
