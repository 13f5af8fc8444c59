"""Idempotent inbox: an event id is applied once per consumer, in the handler's transaction."""
from __future__ import annotations

from sqlalchemy import Column, Connection, PrimaryKeyConstraint, String, Table, bindparam, select

from shared.bulk import copy_to_scratch
from shared.db import UtcDateTime, metadata, upsert, utcnow

inbox_table = Table(
    "inbox",
    metadata,
    Column("consumer", String(64), nullable=False),
    Column("event_id", String(255), nullable=False),
    Column("applied_at", UtcDateTime, nullable=False),
    PrimaryKeyConstraint("consumer", "event_id"),
)


_FIRST_TIME = upsert(inbox_table, ("consumer", "event_id", "applied_at"), ["consumer", "event_id"],
                     returning=["event_id"])
_APPLIED = select(inbox_table.c.event_id).where(inbox_table.c.consumer == bindparam("consumer"),
                                                inbox_table.c.event_id == bindparam("event_id"))


def inbox_row(consumer: str, event_id: str) -> dict:
    return {"consumer": consumer, "event_id": event_id, "applied_at": utcnow()}


def record_many(connection: Connection, rows: list[dict]) -> set[tuple[str, str]]:
    """Records many events at once; the (consumer, event id) pairs that were new."""
    if connection.dialect.name == "postgresql":
        scratch = copy_to_scratch(connection, inbox_table, rows)
        recorded = connection.exec_driver_sql(
            f'INSERT INTO inbox SELECT * FROM "{scratch}" ON CONFLICT DO NOTHING RETURNING consumer, event_id')
        return {(consumer, event_id) for consumer, event_id in recorded}
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    # One multi-row statement (a text statement cannot return rows for many parameter sets).
    statement = sqlite_insert(inbox_table).on_conflict_do_nothing().returning(
        inbox_table.c.consumer, inbox_table.c.event_id)
    return {(row.consumer, row.event_id) for row in connection.execute(statement, rows)}


class Inbox:
    def __init__(self, connection: Connection, consumer: str):
        self._connection = connection
        self._consumer = consumer

    def already_applied(self, event_id: str) -> bool:
        row = self._connection.execute(_APPLIED, {"consumer": self._consumer, "event_id": event_id}).first()
        return row is not None

    def first_time(self, event_id: str) -> bool:
        """Records the event; False when this consumer has applied it before.

        A concurrent duplicate blocks on the primary key until the first commits,
        then sees the conflict: the second copy is never applied.
        """
        # rowcount is not reliable for INSERT on every driver; RETURNING is.
        return self._connection.execute(_FIRST_TIME, inbox_row(self._consumer, event_id)).first() is not None
