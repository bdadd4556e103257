"""Migrations are dialect-neutral: empty PostgreSQL and SQLite go to head and back down, the head schema
matches the ORM models (autogenerate finds nothing to do), and rows of older revisions are carried over."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text

from infoprune_jobs import migrate
from infoprune_jobs.models import Base

TABLES = {"tenants", "api_keys", "jobs", "job_attempts", "job_events", "artifacts", "uploaded_models", "workers"}


def _roundtrip(url: str) -> None:
    migrate.upgrade(url)
    engine = create_engine(url)
    try:
        assert set(inspect(engine).get_table_names()) >= TABLES
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
        assert diff == [], f"models and migrations differ: {diff}"
        migrate.downgrade(url, "base")
        assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
        migrate.upgrade(url)  # and up again: downgrade left nothing behind
        assert set(inspect(engine).get_table_names()) >= TABLES
    finally:
        engine.dispose()


def test_sqlite_upgrade_and_downgrade(tmp_path: Path) -> None:
    _roundtrip(f"sqlite:///{tmp_path / 'jobs.db'}")


def test_postgresql_upgrade_and_downgrade(pg_database: str) -> None:
    _roundtrip(pg_database)


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
def test_offline_sql_renders(dialect: str, capsys: pytest.CaptureFixture[str]) -> None:
    from alembic import command

    url = "sqlite://" if dialect == "sqlite" else "postgresql+psycopg://u@h/db"
    command.upgrade(migrate.alembic_config(url), "head", sql=True)
    assert "CREATE TABLE jobs" in capsys.readouterr().out


def _old_jobs(url: str) -> None:
    """Rows as revision 0001 wrote them: absolute local sources, started_at overwritten by each retry."""
    engine = create_engine(url)
    now = datetime.now(UTC)
    row = {"tenant_id": "t" * 32, "config": "{}", "device_class": "cpu", "created_at": now, "updated_at": now}
    with engine.begin() as conn:
        conn.execute(
            text("INSERT INTO tenants (id, name, webhook_secret, created_at) VALUES (:id, 'acme', 's', :now)"),
            {"id": "t" * 32, "now": now},
        )
        for job_id, source, status, attempts, started in (
            ("a" * 32, "/srv/models/tiny", "running", 2, now),
            ("b" * 32, "owner/name", "queued", 0, None),
            ("c" * 32, "upload:" + "d" * 32, "succeeded", 1, now),
            ("e" * 32, "s3://bucket/m", "queued", 1, now),  # requeued after a lost worker
        ):
            conn.execute(
                text(
                    "INSERT INTO jobs (id, tenant_id, status, stage, progress, source, config, device_class,"
                    " attempts, lease_owner, created_at, started_at, updated_at)"
                    " VALUES (:id, :tenant_id, :status, 'loading', 0.5, :source, :config, :device_class,"
                    " :attempts, 'w1', :created_at, :started, :updated_at)"
                ),
                {**row, "id": job_id, "source": source, "status": status, "attempts": attempts, "started": started},
            )
    engine.dispose()


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
def test_0002_keeps_old_jobs_and_goes_back(dialect: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    url = f"sqlite:///{tmp_path / 'jobs.db'}" if dialect == "sqlite" else request.getfixturevalue("pg_database")
    migrate.upgrade(url, "0001")
    _old_jobs(url)
    migrate.upgrade(url)
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            kinds = {row[0]: row[1] for row in conn.execute(text("SELECT id, source_kind FROM jobs"))}
            attempts = conn.execute(text("SELECT job_id, number, worker, outcome FROM job_attempts ORDER BY job_id"))
            assert [tuple(row) for row in attempts] == [
                ("a" * 32, 2, "w1", "running"),
                ("c" * 32, 1, "w1", "succeeded"),
                ("e" * 32, 1, "w1", "lost"),
            ]
        assert kinds == {"a" * 32: "local", "b" * 32: "hub", "c" * 32: "upload", "e" * 32: "s3"}
        migrate.downgrade(url, "0001")
        assert "job_attempts" not in inspect(engine).get_table_names()
        assert "source_kind" not in {c["name"] for c in inspect(engine).get_columns("jobs")}
        with engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM jobs")).scalar() == 4
    finally:
        engine.dispose()
