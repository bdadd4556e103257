"""The service subcommands registered on the `infoprune` console script."""

from __future__ import annotations

import argparse
import subprocess
from pathlib import Path

import pytest

from infoprune_jobs.cli import register
from tests.service.helpers import INFOPRUNE, env_for


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="infoprune")
    register(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


def test_keys_create_prints_a_new_key_once_and_revoke(service_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = _parse(["keys", "create", "--tenant", "acme"])
    assert args.func(args) == 0
    out = capsys.readouterr()
    key = out.out.strip()
    assert key.startswith("ipk_") and "webhook signing secret" in out.err and key not in out.err
    assert args.func(args) == 0  # a second key for the same tenant; no secret printed again
    second = capsys.readouterr()
    assert second.out.strip() != key and "webhook" not in second.err
    revoke = _parse(["keys", "revoke", key[:16]])
    assert revoke.func(revoke) == 0 and revoke.func(revoke) == 1
    bad = _parse(["keys", "create", "--tenant", "../x"])
    assert bad.func(bad) == 2


def test_worker_needs_a_broker_and_known_classes(service_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    args = _parse(["worker"])
    assert args.func(args) == 2
    monkeypatch.setenv("INFOPRUNE_BROKER_URL", "redis://127.0.0.1:6379/13")
    args = _parse(["worker", "--device-class", "tpu"])
    assert args.func(args) == 2


def test_serve_options_parse() -> None:
    args = _parse(["serve", "--host", "0.0.0.0", "--port", "9000"])
    assert (args.host, args.port, args.migrate) == ("0.0.0.0", 9000, False)


def test_migrate_works_from_any_directory(tmp_path: Path, pg_database: str) -> None:
    from sqlalchemy import create_engine, inspect

    env = env_for(database_url=pg_database)
    out = subprocess.run([*INFOPRUNE, "migrate"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    engine = create_engine(pg_database)
    try:
        assert {"jobs", "job_attempts", "workers"} <= set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_a_worker_refuses_a_class_whose_device_it_cannot_use(tmp_path: Path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this host has a CUDA device")

    def worker(**settings: str) -> subprocess.CompletedProcess[str]:
        env = env_for(data_dir=tmp_path, broker_url="redis://127.0.0.1:6379/13", **settings)
        command = [*INFOPRUNE, "worker", "--device-class", "gpu"]
        return subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)

    no_device = worker(device_classes='["cpu","gpu"]')
    assert no_device.returncode == 2 and "no usable CUDA device" in no_device.stderr
    unconfigured = worker()
    assert unconfigured.returncode == 2 and "not configured" in unconfigured.stderr
