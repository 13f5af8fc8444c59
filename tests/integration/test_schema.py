"""The migrations build exactly the schema the code declares (tables, columns, indexes)."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine

import services.domain.tables  # noqa: F401  (declares the domain tables on the metadata)
import shared.inbox  # noqa: F401
import shared.outbox  # noqa: F401
from shared.db import metadata, normalize_url


def test_the_migrated_database_matches_the_declared_schema(database_url):
    engine = create_engine(normalize_url(database_url))
    try:
        with engine.connect() as connection:
            differences = compare_metadata(MigrationContext.configure(connection), metadata)
    finally:
        engine.dispose()
    assert differences == []
