"""Unit-test fixtures: a migrated SQLite file per test, the real UnitOfWork, fake carriers and Omnitron.

No broker and no PostgreSQL: handlers run over the embedded-mode database exactly as the
services wire them (``Runtime.uow``), with fakes passed where the bootstrap passes clients.
"""

from __future__ import annotations

import shutil
import threading

import pytest
from sqlalchemy import func, insert, select

from contracts import CloudEvent, PackagePacked, ShipmentStatusChanged, parse_event
from contracts.ids import uuid4
from services.domain.repository import PackageRepository, change_row
from services.domain.tables import omnitron_cursor, omnitron_relays, packages, shipments, status_changes
from services.domain.uow import UnitOfWork
from services.migrations import upgrade
from services.packer.handlers import open_shipment
from services.runtime.pipeline import Pipeline
from services.shipper.handlers import mark_shipped, register_with_carrier
from services.tracker.poller import Tracker
from shared import naming
from shared.db import make_engine, utcnow
from shared.inbox import inbox_table
from shared.outbox import outbox_table

import contract_examples as examples
from fakes import Counter, FakeCarrierClient, FakeCarriers


@pytest.fixture(scope="session")
def migrated_sqlite(tmp_path_factory):
    """One ``db upgrade`` per session; each test gets a copy of the migrated file."""
    path = tmp_path_factory.mktemp("schema") / "migrated.sqlite3"
    upgrade("sqlite:///" + str(path))
    return path


class Database:
    def __init__(self, engine):
        self.engine = engine
        self.relay_wakeups = Counter()

    def uow(self, consumer: str, event: CloudEvent | None = None) -> UnitOfWork:
        # As Runtime.uow builds it: the service's inbox name and event source.
        return UnitOfWork(
            self.engine, consumer, naming.event_source(consumer), after_commit=self.relay_wakeups, event=event
        )

    def apply(self, consumer: str, handler, event: CloudEvent, **dependencies) -> None:
        """Applies ``event`` as the service's pipeline does: once, through a unit of work bound to it."""

        def bound(event, uow):
            handler(event, uow, **dependencies)

        Pipeline(consumer, {event.type: bound}, lambda event: self.uow(consumer, event)).apply(event)

    def all(self, query) -> list:
        with self.engine.connect() as connection:
            return connection.execute(query).all()

    def count(self, table, *where) -> int:
        with self.engine.connect() as connection:
            return connection.execute(select(func.count()).select_from(table).where(*where)).scalar_one()

    def shipment(self, package_id: str = "PKG-1001"):
        rows = self.all(select(shipments).where(shipments.c.package_id == package_id))
        assert len(rows) <= 1
        return rows[0] if rows else None

    def package(self, package_id: str = "PKG-1001"):
        rows = self.all(select(packages).where(packages.c.package_id == package_id))
        return rows[0] if rows else None

    def outbox(self) -> list:
        return self.all(select(outbox_table).order_by(outbox_table.c.id))

    def outbox_events(self) -> list[CloudEvent]:
        return [parse_event(row.body) for row in self.outbox()]

    def status_history(self, package_id: str = "PKG-1001") -> list[tuple[int, str | None, str]]:
        """(sequence, previous status, status) of the status events in the outbox, in outbox order."""
        return [
            (e.data.sequence, e.data.previous_status and e.data.previous_status.value, e.data.status.value)
            for e in self.outbox_events()
            if e.data.package_id == package_id
        ]

    def status_changes(self) -> list:
        return self.all(select(status_changes).order_by(status_changes.c.shipment_id, status_changes.c.sequence))

    def inbox_count(self, consumer: str) -> int:
        return self.count(inbox_table, inbox_table.c.consumer == consumer)

    def relays(self) -> list[tuple[int, str, str, int]]:
        rows = self.all(select(omnitron_relays).order_by(omnitron_relays.c.id))
        return [(r.sequence, r.status, r.outcome, r.calls) for r in rows]

    def record_change(
        self, change: ShipmentStatusChanged, event_id: str, packed_at: str = "2026-11-27T10:00:00Z"
    ) -> None:
        """Stores ``change`` as the services record their own: its package (packed at ``packed_at``
        with the change's order items), its shipment and its history row; what exists is kept."""
        with self.engine.begin() as connection:
            package_repository = PackageRepository(connection)
            if package_repository.packed(change.package_id) is None:
                packed = examples.packed(
                    change.package_id,
                    change.order_number,
                    change.carrier,
                    item_ids=tuple(change.order_item_ids),
                    packed_at=packed_at,
                )
                package_repository.record_packed(PackagePacked.model_validate(packed), uuid4())
            if not connection.execute(select(shipments.c.id).where(shipments.c.id == change.shipment_id)).first():
                connection.execute(
                    insert(shipments).values(
                        id=change.shipment_id,
                        package_id=change.package_id,
                        order_number=change.order_number,
                        carrier=change.carrier,
                        status=change.status.value,
                        sequence=change.sequence,
                        tracking_number=change.tracking_number,
                        tracking_url=change.tracking_url,
                        created_at=utcnow(),
                        updated_at=utcnow(),
                    )
                )
            recorded = select(status_changes.c.sequence).where(
                status_changes.c.shipment_id == change.shipment_id, status_changes.c.sequence == change.sequence
            )
            if not connection.execute(recorded).first():
                connection.execute(insert(status_changes), change_row(change, event_id))

    def omnitron_cursor(self, shipment_id: str) -> int | None:
        rows = self.all(select(omnitron_cursor.c.last_sequence).where(omnitron_cursor.c.shipment_id == shipment_id))
        return rows[0][0] if rows else None


@pytest.fixture
def db(tmp_path, migrated_sqlite) -> Database:
    path = tmp_path / "oms-shipments.sqlite3"
    shutil.copyfile(migrated_sqlite, path)
    engine = make_engine("sqlite:///" + str(path))
    yield Database(engine)
    engine.dispose()


@pytest.fixture
def carrier() -> FakeCarrierClient:
    return FakeCarrierClient()


@pytest.fixture
def carriers(carrier) -> FakeCarriers:
    # A poll interval of 0: a polled shipment is due again at once, so tests poll round after round.
    return FakeCarriers({"sandbox": carrier}, poll_interval_s=0)


class Services:
    """Drives the handlers the way their service modules wire them."""

    def __init__(self, db: Database, carriers: FakeCarriers):
        self.db = db
        self.carriers = carriers

    def pack(self, package_id: str = "PKG-1001", event_id: str | None = None, **data) -> CloudEvent:
        return self.apply_packed(self.pack_event(package_id, event_id, **data))

    @staticmethod
    def pack_event(package_id: str = "PKG-1001", event_id: str | None = None, **data) -> CloudEvent:
        return examples.parsed("PackagePacked", examples.packed(package_id, **data), event_id)

    def apply_packed(self, packed: CloudEvent) -> CloudEvent:
        self.db.apply("packer", open_shipment, packed, carriers=self.carriers)
        return packed

    def ship(self, package_id: str = "PKG-1001", event_id: str | None = None) -> CloudEvent:
        shipped = examples.parsed("PackageShipped", examples.shipped(package_id), event_id)
        self.db.apply("shipper", mark_shipped, shipped)
        return shipped

    def pending_event(self, package_id: str = "PKG-1001") -> CloudEvent:
        [pending] = [
            e for e in self.db.outbox_events() if e.data.package_id == package_id and e.data.status.value == "pending"
        ]
        return pending

    def register(self, package_id: str = "PKG-1001") -> CloudEvent:
        pending = self.pending_event(package_id)
        self.db.apply("shipper", register_with_carrier, pending, carriers=self.carriers)
        return pending

    def tracker(self, lease_s: float = 60, stop: threading.Event | None = None, **options) -> Tracker:
        return Tracker(
            uow=lambda: self.db.uow("tracker"),
            engine=self.db.engine,
            carriers=self.carriers,
            stop=stop or threading.Event(),
            batch=50,
            lease_s=lease_s,
            idle_s=0.01,
            concurrency=2,
            **options,
        )


@pytest.fixture
def services(db, carriers) -> Services:
    return Services(db, carriers)
