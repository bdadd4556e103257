"""API keys are rotated (a new key; the old one valid for a grace period, then refused) and revoked,
over HTTP by the tenant and with ``infoprune keys rotate`` by an operator."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from infoprune_jobs.cli import register
from tests.api.conftest import Api
from tests.api.test_hostile import assert_problem


def _ok(api: Api, key: str) -> bool:
    r = api.client.get("/v1/jobs", headers=api.headers(key))
    assert r.status_code in (200, 401), r.text
    return r.status_code == 200


def _rotate(api: Api, key: str, grace_s: int | None = None) -> dict[str, Any]:
    query = "" if grace_s is None else f"?grace_s={grace_s}"
    r = api.client.post(f"/v1/keys/rotate{query}", headers=api.headers(key))
    assert r.status_code == 201, r.text
    assert r.headers["cache-control"] == "no-store"
    return dict(r.json())


def test_rotate_without_grace_replaces_the_key_at_once(api: Api) -> None:
    job = api.client.post(
        "/v1/jobs", json={"source": "tiny", "config": {"target_flops_ratio": 0.5}}, headers=api.headers()
    )
    body = _rotate(api, api.key_a)
    new = body["key"]
    assert new.startswith("ipk_") and new != api.key_a and body["prefix"] == new[:16]
    assert body["previous_prefix"] == api.key_a[:16]
    assert not _ok(api, api.key_a) and _ok(api, new)
    # same tenant: the new key sees the old key's jobs
    assert api.client.get(f"/v1/jobs/{job.json()['id']}", headers=api.headers(new)).status_code == 200
    assert_problem(api.client.post("/v1/keys/rotate", headers=api.headers(api.key_a)), 401)


def test_grace_period_then_the_old_key_is_refused(api: Api) -> None:
    body = _rotate(api, api.key_a, grace_s=1)
    until = datetime.fromisoformat(body["previous_valid_until"])
    assert 0 < (until - datetime.now(UTC)).total_seconds() <= 1.5
    assert _ok(api, api.key_a) and _ok(api, body["key"])
    time.sleep(max(0.0, (until - datetime.now(UTC)).total_seconds()) + 0.2)
    assert not _ok(api, api.key_a) and _ok(api, body["key"])


def test_revoke_old_key_early_self_and_not_another_tenants(api: Api) -> None:
    body = _rotate(api, api.key_a, grace_s=3600)
    new = body["key"]
    assert _ok(api, api.key_a)
    # the grace period is cut short by revoking the old key with the new one
    r = api.client.post(f"/v1/keys/revoke?prefix={body['previous_prefix']}", headers=api.headers(new))
    assert r.status_code == 204 and not _ok(api, api.key_a)
    assert_problem(api.client.post(f"/v1/keys/revoke?prefix={body['previous_prefix']}", headers=api.headers(new)), 404)
    # tenant A cannot revoke tenant B's key, and learns nothing about it
    assert_problem(api.client.post(f"/v1/keys/revoke?prefix={api.key_b[:16]}", headers=api.headers(new)), 404)
    assert _ok(api, api.key_b)
    assert_problem(api.client.post("/v1/keys/revoke?prefix=../../etc", headers=api.headers(new)), 422)
    # a key revokes itself
    assert api.client.post("/v1/keys/revoke", headers=api.headers(new)).status_code == 204
    assert not _ok(api, new)


def test_grace_above_the_servers_maximum_is_422(api: Api) -> None:
    limit = api.ctx.settings.key_rotation_max_grace_s
    assert_problem(api.client.post(f"/v1/keys/rotate?grace_s={limit + 1}", headers=api.headers()), 422)
    assert_problem(api.client.post("/v1/keys/rotate?grace_s=-1", headers=api.headers()), 422)
    assert _ok(api, api.key_a)  # nothing changed


def test_cli_rotate(service_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import argparse

    parser = argparse.ArgumentParser(prog="infoprune")
    register(parser.add_subparsers(dest="command", required=True))

    def run(*argv: str) -> int:
        args = parser.parse_args(list(argv))
        return int(args.func(args))

    assert run("keys", "create", "--tenant", "acme") == 0
    old = capsys.readouterr().out.strip()
    assert run("keys", "rotate", old[:16], "--grace-seconds", "60") == 0
    captured = capsys.readouterr()
    new = captured.out.strip()
    assert new.startswith("ipk_") and new != old and "refused from" in captured.err
    assert run("keys", "rotate", old[:16]) == 0  # still active during its grace: may be rotated again
    capsys.readouterr()
    assert run("keys", "rotate", old[:16]) == 1  # now revoked
    assert run("keys", "rotate", new[:16], "--grace-seconds", "-5") == 2

    from infoprune_jobs.db import make_engine, make_sessionmaker, transaction
    from infoprune_jobs.repository import TenantAdmin
    from infoprune_jobs.settings import Settings

    engine = make_engine(Settings().sqlalchemy_url)
    with transaction(make_sessionmaker(engine)) as s:
        admin = TenantAdmin(s)
        assert admin.authenticate(old) is None and admin.authenticate(new) is not None
    engine.dispose()
