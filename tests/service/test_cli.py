"""The service subcommands registered on the `infoprune` console script."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from infoprune_jobs.cli import register


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
