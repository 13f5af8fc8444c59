"""The database engine: one metadata for the whole schema, PostgreSQL or embedded SQLite."""
from __future__ import annotations

import threading
import time
from datetime import datetime, timezone

from collections.abc import Mapping, Sequence

from sqlalchemy import DateTime, Engine, MetaData, Table, TextClause, bindparam, create_engine, event, text
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.engine import make_url
from sqlalchemy.sql.selectable import TextualSelect
from sqlalchemy.types import TypeDecorator

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


class UtcDateTime(TypeDecorator):
    """Timezone-aware UTC on every backend (SQLite keeps no zone of its own)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect):
        if value is not None:
            if value.tzinfo is None:
                raise ValueError("naive datetime given to a UTC column")
            value = value.astimezone(timezone.utc)
            if dialect.name == "sqlite":
                value = value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect):
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return value


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def upsert(table: Table, columns: Sequence[str], conflict: Sequence[str], *, update: Mapping[str, str] | None = None,
           where: str | None = None, returning: Sequence[str] = ()) -> TextClause | TextualSelect:
    """``INSERT … ON CONFLICT`` written out once, the same SQL for PostgreSQL and SQLite.

    SQLAlchemy's dialect inserts with ``ON CONFLICT`` have no cache key: each execution
    built and compiled the statement again, on every message. A text statement with typed
    parameters (and typed result columns) is compiled once. ``update`` maps a column to
    its SQL (``excluded.<column>`` is the row that was refused); without it a conflict
    does nothing.
    """
    sql = (f"INSERT INTO {table.name} ({', '.join(columns)}) VALUES ({', '.join(':' + c for c in columns)}) "
           f"ON CONFLICT ({', '.join(conflict)}) ")
    if update:
        sql += "DO UPDATE SET " + ", ".join(f"{column} = {value}" for column, value in update.items())
        sql += f" WHERE {where}" if where else ""
    else:
        sql += "DO NOTHING"
    if returning:
        sql += " RETURNING " + ", ".join(returning)
    statement = text(sql).bindparams(*(bindparam(c, type_=table.c[c].type) for c in columns))
    return statement.columns(*(table.c[c] for c in returning)) if returning else statement


def normalize_url(url: str) -> str:
    """``postgresql://`` means psycopg 3 (CONTRACT.md §6)."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def is_postgres(engine: Engine) -> bool:
    return engine.dialect.name == "postgresql"


def make_engine(url: str, pool_size: int = 5) -> Engine:
    url = normalize_url(url)
    if url.startswith("sqlite"):
        engine = create_engine(url, pool_size=8, max_overflow=8, connect_args={"timeout": 30, "check_same_thread": False})
        _serialize_sqlite_writers(engine)
        return engine
    engine = create_engine(url, pool_size=pool_size, max_overflow=pool_size)
    _ping_idle_connections(engine)
    return engine


# A ping on every checkout (pool_pre_ping) is one more round trip per transaction. A
# connection used moments ago is trusted instead; if the server dropped it meanwhile its
# first statement fails, the pool is invalidated and the work is retried like any other
# database outage. One that sat idle longer is pinged, and replaced if the ping fails.
PING_AFTER_IDLE_S = 5.0


def _ping_idle_connections(engine: Engine) -> None:
    @event.listens_for(engine, "checkin")
    def _returned(_dbapi_connection, record) -> None:
        record.info["returned_at"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _ping_if_idle(dbapi_connection, record, _proxy) -> None:
        returned = record.info.get("returned_at")
        if returned is None or time.monotonic() - returned < PING_AFTER_IDLE_S:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except engine.dialect.loaded_dbapi.Error as exc:
            raise DisconnectionError(f"idle connection no longer answers: {exc}") from exc  # the pool retries


def _serialize_sqlite_writers(engine: Engine) -> None:
    # SQLite has no row locks: every transaction takes the write lock up front
    # (BEGIN IMMEDIATE), which gives the same "one writer per shipment" guarantee
    # that SELECT ... FOR UPDATE gives on PostgreSQL.
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")  # WAL stays consistent; the embedded mode trades the last commits on power loss for speed
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    # Within the process, writers queue on a lock that wakes the next one at once;
    # SQLite's own busy handler would make them sleep and poll.
    gate = threading.Lock()

    @event.listens_for(engine, "begin")
    def _on_begin(connection):
        gate.acquire()
        connection.info["holds_gate"] = True
        try:
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        except BaseException:
            _release(connection)
            raise

    def _release(connection) -> None:
        if connection.info.pop("holds_gate", False):
            gate.release()

    event.listen(engine, "commit", _release)
    event.listen(engine, "rollback", _release)
