"""The unit of work: one transaction holding the inbox, the repositories and the outbox.

A shipment's status changes become history rows and outbox events in the same
transaction as the change itself; the relay is woken after the commit.

Inside a batch (shared/batch.py) the unit joins the batch instead, and the crash point
and relay wake-up wait for the batch's real commit.  On the batch's fast path its
repositories only stage rows (services/domain/staged.py) and ``commit()`` hands them to
the batch; on its careful path the unit is a SAVEPOINT in the batch's transaction,
``commit()`` releases it and a failure rolls back to it.
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
)
from services.tracker.queue import TrackerQueue
from contracts.events import routing_key_for
from services.domain.staged import staged_repositories
from shared import batch as batches, tracing
from shared.faults import crash_point
from shared.inbox import Inbox
from shared.outbox import Outbox


#: The unit of work's repositories, each built on its connection the first time a handler uses it.
_REPOSITORIES = {
    "inbox": lambda uow: Inbox(uow._connection, uow._consumer),
    "outbox": lambda uow: Outbox(uow._connection),
    "packages": lambda uow: PackageRepository(uow._connection),
    "shipments": lambda uow: ShipmentRepository(uow._connection),
    "omnitron_relays": lambda uow: OmnitronRelayLog(uow._connection),
    "tracker_queue": lambda uow: TrackerQueue(uow._connection),
}


class UnitOfWork:
    def __init__(self, engine: Engine, consumer: str, source: str, after_commit: Callable[[], None] | None = None):
        self._engine = engine
        self._consumer = consumer
        self._source = source
        self._after_commit = after_commit
        self._connection = None
        self._batch: batches.Batch | None = None

    def __enter__(self) -> "UnitOfWork":
        self._touched: list[Shipment] = []
        self._staged = None
        self._batch = batches.current(self._engine)
        if self._batch is not None and self._batch.staging is not None:
            self._staged = self._batch.staging.unit()
            for name, repository in staged_repositories(self._staged, self._consumer).items():
                setattr(self, name, repository)
            return self
        if self._batch is not None:
            self._connection = self._batch.connection
            self._transaction = self._connection.begin_nested()
        else:
            self._connection = self._engine.connect()
            self._transaction = self._connection.begin()
        for name in _REPOSITORIES:  # built when the handler first asks for one (__getattr__)
            self.__dict__.pop(name, None)
        return self

    def __getattr__(self, name: str):
        build = _REPOSITORIES.get(name)
        if build is None or self.__dict__.get("_connection") is None:
            raise AttributeError(name)
        repository = build(self)
        setattr(self, name, repository)
        return repository

    def __exit__(self, *exc_info) -> None:
        if self._staged is not None:
            self._staged = None  # not kept unless committed
            return
        try:
            if self._transaction.is_active:
                self._transaction.rollback()
        finally:
            if self._batch is None:
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
                envelope = tracing.stamped(CloudEvent.new("ShipmentStatusChanged", self._source, change,
                                                          subject=change.package_id))
                self.shipments.record_change(change, envelope.id)
                self.outbox.add(envelope.id, envelope.type, routing_key_for(envelope.type, change), envelope.to_bytes())
            shipment.changes.clear()
        if self._staged is not None:
            self._staged.keep()
        else:
            self._transaction.commit()
        outbox = self.__dict__.get("outbox")
        wake = self._after_commit if outbox is not None and outbox.added else None
        if self._batch is not None:
            self._batch.unit_committed(self._consumer, wake)
            return
        crash_point(f"after_commit:{self._consumer}")
        if wake:
            wake()
