"""Idempotent inbox: an event is applied once per consumer, in the handler's transaction.

An event is its ``source`` and ``id`` together (CloudEvents 1.0): the same id from two
sources is two events. A handler that fails rolls its transaction back, inbox row and
all, so a refused or dead-lettered message is judged as new when it is replayed.
"""

from __future__ import annotations

from typing import Any, Protocol

from sqlalchemy import Column, Connection, PrimaryKeyConstraint, String, Table, bindparam, delete

from shared.bulk import copy_to_scratch
from shared.db import UtcDateTime, metadata, upsert, utcnow

inbox_table = Table(
    "inbox",
    metadata,
    Column("consumer", String(64), nullable=False),
    Column("source", String(255), nullable=False, doc="the event's source; empty for rows applied before 0005"),
    Column("event_id", String(255), nullable=False),
    Column("applied_at", UtcDateTime, nullable=False),
    PrimaryKeyConstraint("consumer", "source", "event_id"),
)

_KEY = ("consumer", "source", "event_id")
_FIRST_TIME = upsert(inbox_table, (*_KEY, "applied_at"), _KEY, returning=["event_id"])
_FORGET = delete(inbox_table).where(*(inbox_table.c[name] == bindparam(name) for name in _KEY))


class Identified(Protocol):
    """What identifies an event: a CloudEvent envelope has both."""

    source: str
    id: str


def inbox_row(consumer: str, event: Identified) -> dict[str, Any]:
    return {"consumer": consumer, "source": event.source, "event_id": event.id, "applied_at": utcnow()}


def inbox_key(row: dict[str, Any]) -> tuple[str, str, str]:
    return row["consumer"], row["source"], row["event_id"]


def record_many(connection: Connection, rows: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
    """Records many events at once; the (consumer, source, event id) keys that were new."""
    if connection.dialect.name == "postgresql":
        scratch = copy_to_scratch(connection, inbox_table, rows)
        columns = ", ".join((*_KEY, "applied_at"))
        recorded = connection.exec_driver_sql(
            f'INSERT INTO inbox ({columns}) SELECT {columns} FROM "{scratch}" '
            f"ON CONFLICT DO NOTHING RETURNING {', '.join(_KEY)}"
        )
        return {tuple(key) for key in recorded}
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    # One multi-row statement (a text statement cannot return rows for many parameter sets).
    statement = sqlite_insert(inbox_table).on_conflict_do_nothing().returning(*(inbox_table.c[name] for name in _KEY))
    return {tuple(key) for key in connection.execute(statement, rows)}


class Inbox:
    def __init__(self, connection: Connection, consumer: str):
        self._connection = connection
        self._consumer = consumer

    def first_time(self, event: Identified) -> bool:
        """Records the event; False when this consumer has applied it before.

        A concurrent duplicate blocks on the primary key until the first commits,
        then sees the conflict: the second copy is never applied.
        """
        # rowcount is not reliable for INSERT on every driver; RETURNING is.
        return self._connection.execute(_FIRST_TIME, inbox_row(self._consumer, event)).first() is not None

    def forget(self, event: Identified) -> None:
        """Takes back :meth:`first_time` inside the same transaction: the event failed and is judged
        as new when it comes again (a batch commits the others' effects, not this one's)."""
        self._connection.execute(_FORGET, {"consumer": self._consumer, "source": event.source, "event_id": event.id})
