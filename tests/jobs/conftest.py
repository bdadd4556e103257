"""Database fixtures for the domain tests: both dialects, migrated to head."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from infoprune_jobs import migrate
from infoprune_jobs.db import make_engine, make_sessionmaker


@pytest.fixture(params=["sqlite", "postgresql"])
def sessions(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[sessionmaker[Session]]:
    sqlite = f"sqlite:///{tmp_path / 'jobs.db'}"
    url = sqlite if request.param == "sqlite" else request.getfixturevalue("pg_clean")
    migrate.upgrade(url)
    engine = make_engine(url)
    yield make_sessionmaker(engine)
    engine.dispose()
