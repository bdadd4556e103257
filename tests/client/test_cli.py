"""`infoprune jobs|models` as a pipeline step runs them, against a real `infoprune serve`: submit,
wait with a progress bar, download, load the result; exit status 0 only when the job succeeded."""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from tests.client.conftest import Server
from tests.conftest import FAST_CONFIG


def _fast(tmp_path: Path) -> str:
    options = {k: v for k, v in FAST_CONFIG.items() if k != "target_flops_ratio"}
    (tmp_path / "fast.json").write_text(json.dumps(options))
    return f"@{tmp_path / 'fast.json'}"


def test_submit_wait_download_and_load(server: Server, tmp_path: Path) -> None:
    from infoprune_core import load_compressed

    out = tmp_path / "model"
    run = server.cli("jobs", "submit", "tiny-bert", "--target-flops", "0.6", "--config", _fast(tmp_path),
                     "--wait", "--download", str(out), "--json")  # fmt: skip
    assert run.returncode == 0, run.stderr
    job = json.loads(run.stdout)
    assert job["status"] == "succeeded" and job["source"] == "tiny-bert"
    assert "submitted job" in run.stderr and "downloaded" in run.stderr and "%" in run.stderr  # progress bar
    assert {"config.json", "model.safetensors", "infoprune.json"} <= {p.name for p in out.iterdir()}
    assert load_compressed(out) is not None

    report = server.cli("jobs", "report", job["id"], "--json")
    assert report.returncode == 0 and json.loads(report.stdout)["flops"]["scope_ratio"] > 0
    table = server.cli("jobs", "report", job["id"])
    assert table.returncode == 0 and "FLOPs" in table.stdout, table.stderr
    # the pipeline applied the published defaults to every option the job left unset
    published = httpx.get(f"{server.url}/openapi.json").json()["components"]["schemas"]["CompressionOptions"]
    applied = json.loads(report.stdout)["config"]
    for name, prop in published["properties"].items():
        if name not in FAST_CONFIG:
            assert applied[name] == prop.get("default"), name

    events = server.cli("jobs", "events", job["id"], "--json")
    progress = [json.loads(line)["progress"] for line in events.stdout.splitlines()]
    assert progress == sorted(progress) and progress[-1] == 1.0  # never backwards
    listed = server.cli("jobs", "list", "--status", "succeeded", "--json")
    assert job["id"] in [j["id"] for j in json.loads(listed.stdout)]
    everything = events.stdout + report.stdout + (out / "infoprune.json").read_text()
    assert str(server.data) not in everything and "/tmp" not in everything  # tenants see their own names


def test_upload_a_local_folder_and_submit_it(server: Server, tmp_path: Path, tiny_model_dir: Path) -> None:
    run = server.cli("jobs", "submit", str(tiny_model_dir), "--upload", "--target-flops", "0.6",
                     "--config", _fast(tmp_path), "--wait", "--quiet", "--json")  # fmt: skip
    assert run.returncode == 0, run.stderr
    job = json.loads(run.stdout)
    assert job["source"].startswith("upload:") and job["status"] == "succeeded"
    events = server.cli("jobs", "events", job["id"])
    assert "downloading" in events.stdout and str(server.data) not in events.stdout
    assert server.cli("models", "upload", str(tiny_model_dir)).stdout.startswith("upload:")


def test_failures_exit_nonzero_with_the_servers_reason(server: Server, tmp_path: Path) -> None:
    pickled = server.data / "models" / "pickled"
    pickled.mkdir()
    (pickled / "config.json").write_text('{"model_type": "bert"}')
    (pickled / "pytorch_model.bin").write_bytes(b"x")
    failed = server.cli("jobs", "submit", "pickled", "--target-flops", "0.5", "--wait", "--json")
    assert failed.returncode == 1
    assert json.loads(failed.stdout)["status"] == "failed" and "pickle" in failed.stderr
    assert str(server.data) not in failed.stdout + failed.stderr

    refused = server.cli("jobs", "submit", "tiny-bert", "--target-flops", "0.5", "--device-class", "gpu")
    assert refused.returncode == 1 and "not configured" in refused.stderr and "['cpu']" in refused.stderr
    outside = server.cli("jobs", "submit", "/etc", "--target-flops", "0.5")
    assert outside.returncode == 1 and "model root" in outside.stderr and str(server.data) not in outside.stderr
    bad = server.cli("jobs", "submit", "tiny-bert", "--config", "{not json")
    assert bad.returncode == 2 and "--config" in bad.stderr
    assert server.cli("jobs", "get", "0" * 32).returncode == 1  # not found
