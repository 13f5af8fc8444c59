"""Idempotent inbox: an event id is applied once per consumer, in the handler's transaction."""
from __future__ import annotations

from sqlalchemy import Column, Connection, PrimaryKeyConstraint, String, Table, select

from shared.db import UtcDateTime, metadata, utcnow

inbox_table = Table(
    "inbox",
    metadata,
    Column("consumer", String(64), nullable=False),
    Column("event_id", String(255), nullable=False),
    Column("applied_at", UtcDateTime, nullable=False),
    PrimaryKeyConstraint("consumer", "event_id"),
)


class Inbox:
    def __init__(self, connection: Connection, consumer: str):
        self._connection = connection
        self._consumer = consumer

    def already_applied(self, event_id: str) -> bool:
        row = self._connection.execute(
            select(inbox_table.c.event_id).where(
                inbox_table.c.consumer == self._consumer, inbox_table.c.event_id == event_id
            )
        ).first()
        return row is not None

    def first_time(self, event_id: str) -> bool:
        """Records the event; False when this consumer has applied it before.

        A concurrent duplicate blocks on the primary key until the first commits,
        then sees the conflict: the second copy is never applied.
        """
        if self._connection.dialect.name == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as dialect_insert
        else:
            from sqlalchemy.dialects.sqlite import insert as dialect_insert
        statement = (
            dialect_insert(inbox_table)
            .values(consumer=self._consumer, event_id=event_id, applied_at=utcnow())
            .on_conflict_do_nothing()
            .returning(inbox_table.c.event_id)
        )
        # rowcount is not reliable for INSERT on every driver; RETURNING is.
        return self._connection.execute(statement).first() is not None
