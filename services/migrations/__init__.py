"""Alembic migrations of the whole schema; ``oms-shipments db upgrade`` runs them."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

from shared.db import normalize_url

HERE = Path(__file__).parent


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(HERE))
    config.set_main_option("version_locations", str(HERE / "versions"))
    config.set_main_option("path_separator", "os")
    config.attributes["database_url"] = normalize_url(database_url)
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(database_url), revision)


def current_revision(database_url: str) -> str | None:
    from alembic.runtime.migration import MigrationContext
    from sqlalchemy import create_engine

    engine = create_engine(normalize_url(database_url))
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()


def create_database(database_url: str) -> bool:
    """Creates the PostgreSQL database the URL names when it does not exist (``db upgrade --create``);
    True when it did. A SQLite file is created by its first connection."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    url = make_url(normalize_url(database_url))
    if url.get_backend_name() != "postgresql":
        return False
    # Connected to the maintenance database: the one named does not exist yet.
    engine = create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            if connection.execute(
                text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": url.database}
            ).first():
                return False
            connection.execute(text(f"CREATE DATABASE {engine.dialect.identifier_preparer.quote(url.database)}"))
            return True
    finally:
        engine.dispose()
