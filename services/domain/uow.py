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

from typing import Callable, TypeVar

from sqlalchemy import Connection, Engine

from contracts import CloudEvent
from contracts.events import routing_key_for
from services.domain.model import Shipment
from services.domain.repository import (
    OmnitronRelayLog,
    PackageRepository,
    ShipmentRepository,
)
from services.domain.staged import staged_repositories
from shared import batch as batches
from shared import tracing
from shared.faults import crash_point
from shared.inbox import Identified, Inbox
from shared.outbox import Outbox

R = TypeVar("R")


class AlreadyApplied(Exception):
    """The unit of work's event was applied before (its inbox row is there): nothing to do."""


class UnitOfWork:
    """``event``: the event this unit applies.  Entering the unit records it in the inbox, in
    the unit's transaction; one applied before raises :class:`AlreadyApplied` instead (a
    concurrent copy waits on the inbox row until the first commits).  A unit entered more
    than once (the shipper reads, calls the carrier, then writes) records it each time, and
    only a commit keeps it.  Work that must not count as applying the event takes
    :meth:`aside`."""

    def __init__(
        self,
        engine: Engine,
        consumer: str,
        source: str,
        after_commit: Callable[[], None] | None = None,
        event: Identified | None = None,
    ):
        self._engine = engine
        self._consumer = consumer
        self._source = source
        self._after_commit = after_commit
        self._event = event
        self._connection = None
        self._batch: batches.Batch | None = None
        self._reads_only = False

    @property
    def consumer(self) -> str:
        """Whose inbox this unit records its event in."""
        return self._consumer

    def aside(self) -> "UnitOfWork":
        """A unit of work of the same consumer that applies no event (its commit records none)."""
        return UnitOfWork(self._engine, self._consumer, self._source, self._after_commit)

    def reading(self) -> "UnitOfWork":
        """An :meth:`aside` unit that only reads, outside a transaction: each statement sees what
        is committed when it runs, and no BEGIN or ROLLBACK round trip is made; it cannot commit."""
        unit = self.aside()
        unit._reads_only = True
        return unit

    def __enter__(self) -> "UnitOfWork":
        self._touched: list[Shipment] = []
        self._staged = None
        self._batch = batches.current(self._engine)
        if self._batch is not None and self._batch.staging is not None:
            self._staged = self._batch.staging.unit()
            self._repositories = staged_repositories(self._staged, self._consumer)
        else:
            if self._batch is not None:
                self._connection = self._batch.connection
                self._transaction = self._connection.begin_nested()
            elif self._reads_only:
                self._connection = self._engine.connect().execution_options(isolation_level="AUTOCOMMIT")
                self._transaction = None
            else:
                self._connection = self._engine.connect()
                self._transaction = self._connection.begin()
            self._repositories = {}
        if self._event is not None and not self._first_time():
            self.__exit__(None, None, None)
            raise AlreadyApplied()
        return self

    def _first_time(self) -> bool:
        try:
            return self.inbox.first_time(self._event)
        except BaseException:
            self.__exit__(None, None, None)
            raise

    def __exit__(self, *exc_info) -> None:
        if self._staged is not None:
            self._staged = None  # not kept unless committed
            return
        try:
            if self._transaction is not None and self._transaction.is_active:
                self._transaction.rollback()
        finally:
            if self._batch is None:
                self._connection.close()
            self._connection = None

    # The repositories, each made when first used in this transaction.
    def _repository(self, name, make: Callable):
        repository = self._repositories.get(name)
        if repository is None:
            repository = self._repositories[name] = make()
        return repository

    @property
    def inbox(self) -> Inbox:
        return self._repository("inbox", lambda: Inbox(self._connection, self._consumer))

    @property
    def outbox(self) -> Outbox:
        return self._repository("outbox", lambda: Outbox(self._connection))

    @property
    def packages(self) -> PackageRepository:
        return self._repository("packages", lambda: PackageRepository(self._connection))

    @property
    def shipments(self) -> ShipmentRepository:
        return self._repository("shipments", lambda: ShipmentRepository(self._connection))

    @property
    def omnitron_relays(self) -> OmnitronRelayLog:
        return self._repository("omnitron_relays", lambda: OmnitronRelayLog(self._connection))

    def repository(self, kind: Callable[[Connection], R]) -> R:
        """Another part's repository (the tracker's queue), made on this unit's connection."""
        if self._staged is not None:
            raise batches.Replay(f"{getattr(kind, '__name__', kind)} needs the database")
        return self._repository(kind, lambda: kind(self._connection))

    def add(self, shipment: Shipment) -> None:
        self.shipments.add(shipment)
        self._touched.append(shipment)

    def save(self, shipment: Shipment, **schedule) -> None:
        self.shipments.save(shipment, **schedule)
        if not any(seen is shipment for seen in self._touched):
            self._touched.append(shipment)

    def commit(self) -> None:
        if self._reads_only:
            raise RuntimeError("a reading unit of work commits nothing")
        for shipment in self._touched:
            for change in shipment.changes:
                envelope = tracing.stamped(
                    CloudEvent.new("ShipmentStatusChanged", self._source, change, subject=change.package_id)
                )
                self.shipments.record_change(change, envelope.id)
                self.outbox.add(envelope.id, envelope.type, routing_key_for(envelope.type, change), envelope.to_bytes())
            shipment.changes.clear()
        if self._staged is not None:
            self._staged.keep()
        else:
            self._transaction.commit()
        outbox = self._repositories.get("outbox")
        wake = self._after_commit if outbox is not None and outbox.added else None
        if self._batch is not None:
            self._batch.unit_committed(self._consumer, wake)
            return
        crash_point(f"after_commit:{self._consumer}")
        if wake:
            wake()
