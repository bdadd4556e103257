"""Run the Alembic migrations of ``migrations/`` programmatically (CLI, tests, embedded start)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

ROOT = Path(__file__).resolve().parent.parent


def alembic_config(url: str) -> Config:
    ini = ROOT / "alembic.ini"
    if not ini.exists() or not (ROOT / "migrations").is_dir():
        raise RuntimeError(f"migrations not found next to the package ({ROOT}); run from a source checkout")
    config = Config(str(ini))
    config.set_main_option("script_location", str(ROOT / "migrations"))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    config.attributes["configure_logger"] = False
    return config


def upgrade(url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(url), revision)


def downgrade(url: str, revision: str = "base") -> None:
    command.downgrade(alembic_config(url), revision)
