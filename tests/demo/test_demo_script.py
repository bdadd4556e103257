"""The README's first command: scripts/demo.sh runs the main job through the embedded service."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_demo_script_compresses_the_demo_through_the_embedded_server(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    done = subprocess.run(
        ["bash", "scripts/demo.sh", "--target-flops", "0.5", "--output", str(out)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads((out / "infoprune.json").read_text())["report"]
    assert abs(report["flops"]["scope_ratio"] - 0.5) <= 0.02
    assert "succeeded" in done.stdout + done.stderr and "LlavaForConditionalGeneration loaded from" in done.stdout
    assert report["accuracy"]["after_compression"] >= 0.97 * report["accuracy"]["before"]
    assert not list(tmp_path.glob("infoprune-demo.*")), "the server's state folder is removed"
