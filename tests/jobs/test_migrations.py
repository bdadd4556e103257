"""Migrations are dialect-neutral: empty PostgreSQL and SQLite go to head and back down, and the
head schema matches the ORM models (autogenerate finds nothing to do)."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect

from infoprune_jobs import migrate
from infoprune_jobs.models import Base

TABLES = {"tenants", "api_keys", "jobs", "job_events", "artifacts", "uploaded_models"}


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
