"""Loading and saving packages and shipments; the only domain code that writes SQL."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, insert, select, update

from contracts import PackagePacked, ShipmentStatus
from services.domain.model import Shipment
from services.domain.tables import (
    omnitron_cursor,
    omnitron_relays,
    package_items,
    packages,
    shipments,
    status_changes,
)
from shared.db import utcnow


def _upsert(connection: Connection, table, values: dict, index: list[str], update_columns: list[str]):
    if connection.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as dialect_insert
    else:
        from sqlalchemy.dialects.sqlite import insert as dialect_insert
    statement = dialect_insert(table).values(values)
    if update_columns:
        statement = statement.on_conflict_do_update(
            index_elements=index, set_={c: statement.excluded[c] for c in update_columns}
        )
    else:
        statement = statement.on_conflict_do_nothing(index_elements=index)
    return connection.execute(statement)


class PackageRepository:
    def __init__(self, connection: Connection):
        self._c = connection

    def _lock(self, package_id: str):
        return self._c.execute(
            select(packages).where(packages.c.package_id == package_id).with_for_update()
        ).first()

    def record_packed(self, packed: PackagePacked, event_id: str) -> bool:
        """Stores what was packed; False when the package was packed before (another event id)."""
        _upsert(self._c, packages, {"package_id": packed.package_id, "first_seen_at": utcnow()}, ["package_id"], [])
        row = self._lock(packed.package_id)
        if row.packed is not None:
            return False
        self._c.execute(
            update(packages)
            .where(packages.c.package_id == packed.package_id)
            .values(
                order_number=packed.order_number,
                carrier=packed.carrier,
                delivery_type=packed.delivery_type,
                packed_at=packed.packed_at,
                packed=packed.model_dump(mode="json"),
                packed_event_id=event_id,
            )
        )
        self._c.execute(
            insert(package_items),
            [
                {"package_id": packed.package_id, "order_item_id": item.order_item_id, "sku": item.sku,
                 "barcode": item.barcode, "name": item.name, "quantity": item.quantity, "deci": item.deci}
                for item in packed.items
            ],
        )
        return True

    def record_shipped(self, package_id: str, shipped_at: datetime, event_id: str) -> None:
        """Remembers the hand-over even before the package is known, holding its row lock."""
        _upsert(self._c, packages, {"package_id": package_id, "first_seen_at": utcnow()}, ["package_id"], [])
        row = self._lock(package_id)
        if row.shipped_at is None:
            self._c.execute(
                update(packages)
                .where(packages.c.package_id == package_id)
                .values(shipped_at=shipped_at, shipped_event_id=event_id)
            )

    def lock_handover(self, package_id: str) -> datetime | None:
        """Locks the package (the order every writer follows: package, then shipment); when it was shipped."""
        row = self._lock(package_id)
        return row.shipped_at if row else None

    def packed(self, package_id: str) -> PackagePacked | None:
        row = self._c.execute(select(packages.c.packed).where(packages.c.package_id == package_id)).first()
        return PackagePacked.model_validate(row.packed) if row and row.packed else None


class ShipmentRepository:
    def __init__(self, connection: Connection):
        self._c = connection

    def _load(self, row) -> Shipment:
        items = self._c.execute(
            select(package_items.c.order_item_id)
            .where(package_items.c.package_id == row.package_id)
            .order_by(package_items.c.order_item_id)
        ).scalars().all()
        return Shipment(
            id=row.id, package_id=row.package_id, order_number=row.order_number, carrier=row.carrier,
            order_item_ids=list(items), status=ShipmentStatus(row.status), sequence=row.sequence,
            carrier_status=row.carrier_status, tracking_number=row.tracking_number,
            tracking_url=row.tracking_url, label_url=row.label_url,
        )

    def get(self, shipment_id: str, for_update: bool = False) -> Shipment | None:
        query = select(shipments).where(shipments.c.id == shipment_id)
        row = self._c.execute(query.with_for_update() if for_update else query).first()
        return self._load(row) if row else None

    def get_by_package(self, package_id: str, for_update: bool = False) -> Shipment | None:
        query = select(shipments).where(shipments.c.package_id == package_id)
        row = self._c.execute(query.with_for_update() if for_update else query).first()
        return self._load(row) if row else None

    def add(self, shipment: Shipment) -> None:
        now = utcnow()
        self._c.execute(
            insert(shipments).values(
                id=shipment.id, package_id=shipment.package_id, order_number=shipment.order_number,
                carrier=shipment.carrier, status=shipment.status.value, sequence=shipment.sequence,
                created_at=now, updated_at=now,
            )
        )

    def save(self, shipment: Shipment, **schedule) -> None:
        """Writes the shipment's state; ``schedule`` sets tracker columns (next_poll_at, lease...)."""
        self._c.execute(
            update(shipments)
            .where(shipments.c.id == shipment.id)
            .values(
                status=shipment.status.value, sequence=shipment.sequence,
                carrier_status=shipment.carrier_status, tracking_number=shipment.tracking_number,
                tracking_url=shipment.tracking_url, label_url=shipment.label_url,
                updated_at=utcnow(), **schedule,
            )
        )

    def record_change(self, change, event_id: str) -> None:
        self._c.execute(
            insert(status_changes).values(
                shipment_id=change.shipment_id, sequence=change.sequence,
                previous_status=change.previous_status.value if change.previous_status else None,
                status=change.status.value, carrier_status=change.carrier_status,
                changed_at=change.changed_at, event_id=event_id,
            )
        )


class OmnitronRelayLog:
    """Per shipment, the newest sequence relayed to Omnitron, and every relay made."""

    def __init__(self, connection: Connection):
        self._c = connection

    def lock_last_sequence(self, shipment_id: str) -> int:
        _upsert(self._c, omnitron_cursor, {"shipment_id": shipment_id, "last_sequence": 0}, ["shipment_id"], [])
        return self._c.execute(
            select(omnitron_cursor.c.last_sequence)
            .where(omnitron_cursor.c.shipment_id == shipment_id)
            .with_for_update()
        ).scalar_one()

    def record(self, change, outcome: str, calls: int, event_id: str) -> None:
        if outcome == "sent":
            self._c.execute(
                update(omnitron_cursor)
                .where(omnitron_cursor.c.shipment_id == change.shipment_id)
                .values(last_sequence=change.sequence)
            )
        self._c.execute(
            insert(omnitron_relays).values(
                shipment_id=change.shipment_id, sequence=change.sequence, status=change.status.value,
                outcome=outcome, calls=calls, event_id=event_id, relayed_at=utcnow(),
            )
        )


class TrackerQueue:
    """Due shipments, claimed with leases so no two trackers poll one shipment at once.

    A claim pushes ``next_poll_at`` one lease ahead and stamps a claim token: if the
    tracker dies, the shipment simply becomes due again when the lease runs out.
    """

    def __init__(self, connection: Connection):
        self._c = connection

    def claim_due(self, token: str, now: datetime, lease_until: datetime, limit: int) -> list[tuple[str, str]]:
        due = (
            select(shipments.c.id)
            .where(shipments.c.next_poll_at.is_not(None), shipments.c.next_poll_at <= now)
            .order_by(shipments.c.next_poll_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        rows = self._c.execute(
            update(shipments)
            .where(shipments.c.id.in_(due.scalar_subquery()))
            .values(lease_owner=token, next_poll_at=lease_until)
            .returning(shipments.c.id, shipments.c.carrier)
        ).all()
        return [(row.id, row.carrier) for row in rows]

    def holds_claim(self, shipment_id: str, token: str) -> bool:
        """Locks the shipment row; whether our claim on it still stands."""
        owner = self._c.execute(
            select(shipments.c.lease_owner).where(shipments.c.id == shipment_id).with_for_update()
        ).scalar()
        return owner == token

    def finish_poll(self, shipment_id: str, now: datetime, next_poll_at: datetime | None) -> None:
        self._c.execute(
            update(shipments)
            .where(shipments.c.id == shipment_id)
            .values(lease_owner=None, next_poll_at=next_poll_at, polls=shipments.c.polls + 1, last_polled_at=now)
        )
