"""Transactional outbox: events are stored with the state change that caused them.

The relay (shared/relay.py) publishes them afterwards, so an event is never lost
between a commit and a publish, and never published for a change that rolled back.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import BigInteger, Column, Connection, Integer, LargeBinary, String, Table, insert

from shared.db import UtcDateTime, metadata, utcnow

outbox_table = Table(
    "outbox",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("event_id", String(255), nullable=False),
    Column("event_type", String(64), nullable=False),
    Column("routing_key", String(255), nullable=False),
    Column("body", LargeBinary, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
)

_INSERT = insert(outbox_table)


def outbox_row(event_id: str, event_type: str, routing_key: str, body: bytes) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "event_type": event_type,
        "routing_key": routing_key,
        "body": body,
        "created_at": utcnow(),
    }


class Outbox:
    def __init__(self, connection: Connection):
        self._connection = connection
        self.added = 0

    def add(self, event_id: str, event_type: str, routing_key: str, body: bytes) -> None:
        self._connection.execute(_INSERT, outbox_row(event_id, event_type, routing_key, body))
        self.added += 1
