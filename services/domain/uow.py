"""The unit of work: one transaction holding the inbox, the repositories and the outbox.

A shipment's status changes become history rows and outbox events in the same
transaction as the change itself; the relay is woken after the commit.
"""
from __future__ import annotations

from typing import Callable

from sqlalchemy import Engine

from contracts import CloudEvent
from services.domain.model import Shipment
from services.domain.repository import (
    OmnitronRelayLog,
    PackageRepository,
    ShipmentRepository,
    TrackerQueue,
)
from contracts.events import routing_key_for
from shared.faults import crash_point
from shared.inbox import Inbox
from shared.outbox import Outbox


class UnitOfWork:
    def __init__(self, engine: Engine, consumer: str, source: str, after_commit: Callable[[], None] | None = None):
        self._engine = engine
        self._consumer = consumer
        self._source = source
        self._after_commit = after_commit
        self._connection = None

    def __enter__(self) -> "UnitOfWork":
        self._connection = self._engine.connect()
        self._transaction = self._connection.begin()
        self.inbox = Inbox(self._connection, self._consumer)
        self.outbox = Outbox(self._connection)
        self.packages = PackageRepository(self._connection)
        self.shipments = ShipmentRepository(self._connection)
        self.omnitron_relays = OmnitronRelayLog(self._connection)
        self.tracker_queue = TrackerQueue(self._connection)
        self._touched: list[Shipment] = []
        return self

    def __exit__(self, *exc_info) -> None:
        try:
            if self._transaction.is_active:
                self._transaction.rollback()
        finally:
            self._connection.close()
            self._connection = None

    def add(self, shipment: Shipment) -> None:
        self.shipments.add(shipment)
        self._touched.append(shipment)

    def save(self, shipment: Shipment, **schedule) -> None:
        self.shipments.save(shipment, **schedule)
        if not any(seen is shipment for seen in self._touched):
            self._touched.append(shipment)

    def commit(self) -> None:
        for shipment in self._touched:
            for change in shipment.changes:
                envelope = CloudEvent.new("ShipmentStatusChanged", self._source, change, subject=change.package_id)
                self.shipments.record_change(change, envelope.id)
                self.outbox.add(envelope.id, envelope.type, routing_key_for(envelope.type, change), envelope.to_bytes())
            shipment.changes.clear()
        self._transaction.commit()
        crash_point(f"after_commit:{self._consumer}")
        if self.outbox.added and self._after_commit:
            self._after_commit()
