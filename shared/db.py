"""The database engine: one metadata for the whole schema, PostgreSQL or embedded SQLite."""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import (
    Connection,
    DateTime,
    Engine,
    MetaData,
    Table,
    TextClause,
    bindparam,
    create_engine,
    event,
    func,
    select,
    text,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.sql.selectable import TextualSelect
from sqlalchemy.types import TypeDecorator

from shared.settings import Settings

if TYPE_CHECKING:
    from sqlalchemy.engine.interfaces import DBAPIConnection, Dialect
    from sqlalchemy.pool import ConnectionPoolEntry, PoolProxiedConnection

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


class UtcDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC on every backend (SQLite keeps no zone of its own)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None:
            if value.tzinfo is None:
                raise ValueError("naive datetime given to a UTC column")
            value = value.astimezone(timezone.utc)
            if dialect.name == "sqlite":
                value = value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return value


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


_DATABASE_NOW = select(func.clock_timestamp())


def database_now(connection: Connection) -> datetime:
    """The database's clock (PostgreSQL), so processes on several machines agree on it;
    elsewhere (the embedded mode's SQLite: one process) this machine's."""
    if connection.dialect.name != "postgresql":
        return utcnow()
    return cast(datetime, connection.execute(_DATABASE_NOW).scalar_one()).astimezone(timezone.utc)


def upsert(
    table: Table,
    columns: Sequence[str],
    conflict: Sequence[str],
    *,
    update: Mapping[str, str] | None = None,
    where: str | None = None,
    returning: Sequence[str] = (),
) -> TextClause | TextualSelect:
    """``INSERT … ON CONFLICT`` written out once, the same SQL for PostgreSQL and SQLite.

    SQLAlchemy's dialect inserts with ``ON CONFLICT`` have no cache key: each execution
    built and compiled the statement again, on every message. A text statement with typed
    parameters (and typed result columns) is compiled once. ``update`` maps a column to
    its SQL (``excluded.<column>`` is the row that was refused); without it a conflict
    does nothing.
    """
    sql = (
        f"INSERT INTO {table.name} ({', '.join(columns)}) VALUES ({', '.join(':' + c for c in columns)}) "
        f"ON CONFLICT ({', '.join(conflict)}) "
    )
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


@dataclass(frozen=True)
class SessionBounds:
    """How long a PostgreSQL connection may take to open, stay silent, run, wait or idle.

    The values are the ``OMS_DB_*`` settings (their defaults and reasons are there):
    none of them is reached on the hot path (batches of a few hundred rows take
    milliseconds); each ends a stall instead: a server that vanished (keepalives), a
    statement or a lock wait that would never end, a frozen process holding its locks.
    """

    connect_timeout_s: float
    keepalives_idle_s: float
    keepalives_interval_s: float
    keepalives_count: int
    statement_timeout_s: float
    lock_timeout_s: float
    idle_in_transaction_timeout_s: float

    @classmethod
    def from_settings(cls, settings: Settings) -> "SessionBounds":
        return cls(
            connect_timeout_s=settings.db_connect_timeout_s,
            keepalives_idle_s=settings.db_keepalives_idle_s,
            keepalives_interval_s=settings.db_keepalives_interval_s,
            keepalives_count=settings.db_keepalives_count,
            statement_timeout_s=settings.db_statement_timeout_s,
            lock_timeout_s=settings.db_lock_timeout_s,
            idle_in_transaction_timeout_s=settings.db_idle_in_transaction_timeout_s,
        )

    def connect_args(self, application_name: str) -> dict[str, Any]:
        """libpq connection parameters; the three timeouts are sent as the session's start-up options."""
        timeouts = {
            "statement_timeout": self.statement_timeout_s,
            "lock_timeout": self.lock_timeout_s,
            "idle_in_transaction_session_timeout": self.idle_in_transaction_timeout_s,
        }
        return {
            "connect_timeout": max(2, math.ceil(self.connect_timeout_s)),  # libpq: whole seconds, 1 means 2
            "keepalives": 1,
            "keepalives_idle": max(1, math.ceil(self.keepalives_idle_s)),
            "keepalives_interval": max(1, math.ceil(self.keepalives_interval_s)),
            "keepalives_count": self.keepalives_count,
            "application_name": application_name,
            "options": " ".join(f"-c {name}={milliseconds(seconds)}" for name, seconds in timeouts.items()),
        }


def milliseconds(seconds: float) -> int:
    """A PostgreSQL duration setting's value (0 would switch the bound off)."""
    return max(1, round(seconds * 1000))


def default_application_name() -> str:
    """What ``pg_stat_activity`` shows for this process's sessions: which process holds what."""
    return f"oms-shipments[{os.getpid()}]"


def make_engine(
    url: str, pool_size: int = 5, *, bounds: SessionBounds | None = None, application_name: str | None = None
) -> Engine:
    url = normalize_url(url)
    if url.startswith("sqlite"):
        engine = create_engine(
            url,
            pool_size=8,
            max_overflow=8,
            hide_parameters=True,
            connect_args={"timeout": 30, "check_same_thread": False},
        )
        _serialize_sqlite_writers(engine)
        return engine
    if bounds is None:
        bounds = SessionBounds.from_settings(Settings())
    connect_args = _with_url_overrides(url, bounds.connect_args(application_name or default_application_name()))
    # hide_parameters: SQLAlchemy writes a failed statement's parameters (addresses, phone
    # numbers) into the error's text, which ends up in logs and dead-letter headers.
    engine = create_engine(
        url, pool_size=pool_size, max_overflow=pool_size, hide_parameters=True, connect_args=connect_args
    )
    _ping_idle_connections(engine)
    return engine


def _with_url_overrides(url: str, connect_args: dict[str, Any]) -> dict[str, Any]:
    """A parameter the URL sets itself wins; its ``options`` come after ours, so theirs win too."""
    query = make_url(url).query
    merged = {name: value for name, value in connect_args.items() if name not in query}
    if "options" in query:
        given = query["options"]
        merged["options"] = f"{connect_args['options']} {given if isinstance(given, str) else ' '.join(given)}"
    return merged


# A ping on every checkout (pool_pre_ping) is one more round trip per transaction. A
# connection used moments ago is trusted instead; if the server dropped it meanwhile its
# first statement fails, the pool is invalidated and the work is retried like any other
# database outage. One that sat idle longer is pinged, and replaced if the ping fails.
PING_AFTER_IDLE_S = 5.0


def _ping_idle_connections(engine: Engine) -> None:
    @event.listens_for(engine, "checkin")
    def _returned(_dbapi_connection: DBAPIConnection, record: ConnectionPoolEntry) -> None:
        record.info["returned_at"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _ping_if_idle(
        dbapi_connection: DBAPIConnection, record: ConnectionPoolEntry, _proxy: PoolProxiedConnection
    ) -> None:
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
    def _on_connect(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:  # sqlite3's connection
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(
            "PRAGMA synchronous=NORMAL"
        )  # WAL stays consistent; the embedded mode trades the last commits on power loss for speed
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    # Within the process, writers queue on a lock that wakes the next one at once;
    # SQLite's own busy handler would make them sleep and poll.
    gate = threading.Lock()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        gate.acquire()
        connection.info["holds_gate"] = True
        try:
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        except BaseException:
            _release(connection)
            raise

    def _release(connection: Connection) -> None:
        if connection.info.pop("holds_gate", False):
            gate.release()

    event.listen(engine, "commit", _release)
    event.listen(engine, "rollback", _release)
