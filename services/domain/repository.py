"""Loading and saving packages and shipments; the only domain code that writes SQL."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, and_, bindparam, exists, func, insert, select, text, update

from contracts import PackagePacked, ShipmentStatus, ShipmentStatusChanged
from services.domain.model import Shipment
from services.domain.tables import (
    inbox_table,
    omnitron_cursor,
    omnitron_relays,
    package_items,
    packages,
    shipments,
    status_changes,
    waiting_commands,
)
from shared.bulk import copy_rows, copy_to_scratch
from shared.db import UtcDateTime, upsert, utcnow
from shared.inbox import Identified

# The columns a PackagePacked fills in on a package row (the row may exist already).
_PACKED_COLUMNS = ("order_number", "carrier", "delivery_type", "packed_at", "packed", "packed_event_id")

# It creates the row, or fills in a row a PackageShipped created, or leaves a packed one
# alone (no row returned); either way the row stays locked (ON CONFLICT locks the row it
# meets even when its WHERE declines the update).
_RECORD_PACKED = upsert(
    packages,
    ("package_id", "first_seen_at", *_PACKED_COLUMNS),
    ["package_id"],
    update={c: f"excluded.{c}" for c in _PACKED_COLUMNS},
    where="packages.packed IS NULL",
    returning=["package_id"],
)
_SEEN_PACKAGE = upsert(packages, ("package_id", "first_seen_at"), ["package_id"])
# The hand-over in one statement: it creates the row, or sets a first hand-over on it, or
# leaves an earlier one alone; the row stays locked either way (see _RECORD_PACKED).
_RECORD_SHIPPED = upsert(
    packages,
    ("package_id", "first_seen_at", "shipped_at", "shipped_event_id"),
    ["package_id"],
    update={"shipped_at": "excluded.shipped_at", "shipped_event_id": "excluded.shipped_event_id"},
    where="packages.shipped_at IS NULL",
)
_LOCK_PACKAGE = select(packages).where(packages.c.package_id == bindparam("package_id")).with_for_update()
_PACKED_OF = select(packages.c.packed).where(packages.c.package_id == bindparam("package_id"))
_ITEMS_OF = (
    select(package_items.c.order_item_id)
    .where(package_items.c.package_id == bindparam("package_id"))
    .order_by(package_items.c.order_item_id)
)
_SHIPMENT = select(shipments).where(shipments.c.id == bindparam("shipment_id"))
_RECORDED_CHANGE = (
    select(
        status_changes,
        shipments.c.package_id,
        shipments.c.order_number,
        shipments.c.carrier,
        shipments.c.tracking_number,
        shipments.c.tracking_url,
    )
    .join(shipments, shipments.c.id == status_changes.c.shipment_id)
    .where(status_changes.c.shipment_id == bindparam("shipment_id"), status_changes.c.sequence == bindparam("sequence"))
)
_SHIPMENT_FOR_UPDATE = _SHIPMENT.with_for_update()
# What a registration reads before it calls the carrier, in one statement instead of five:
# the shipment, the change the event names, what was packed, whether operator commands
# wait for the package, and whether this consumer applied the event before.
_REGISTRATION = (
    select(
        shipments,
        status_changes.c.sequence.label("recorded_sequence"),
        status_changes.c.data.label("recorded_data"),
        packages.c.packed.label("packed"),
        exists().where(waiting_commands.c.package_id == shipments.c.package_id).label("commands_waiting"),
        exists()
        .where(
            inbox_table.c.consumer == bindparam("consumer"),
            inbox_table.c.source == bindparam("source"),
            inbox_table.c.event_id == bindparam("event_id"),
        )
        .label("applied"),
    )
    .select_from(shipments)
    .outerjoin(
        status_changes,
        and_(status_changes.c.shipment_id == shipments.c.id, status_changes.c.sequence == bindparam("sequence")),
    )
    .outerjoin(packages, packages.c.package_id == shipments.c.package_id)
    .where(shipments.c.id == bindparam("shipment_id"))
)
_SHIPMENT_OF_PACKAGE = select(shipments).where(shipments.c.package_id == bindparam("package_id"))
_SHIPMENT_OF_PACKAGE_FOR_UPDATE = _SHIPMENT_OF_PACKAGE.with_for_update()
# The SET list comes from the parameters given: the shipment's state and any schedule columns.
_SAVE_SHIPMENT = update(shipments).where(shipments.c.id == bindparam("b_shipment_id"))
_INSERT_SHIPMENT = insert(shipments)
_INSERT_CHANGE = insert(status_changes)
_INSERT_ITEMS = insert(package_items)
_INSERT_RELAY = insert(omnitron_relays)
_MOVE_CURSOR = (
    update(omnitron_cursor)
    .where(omnitron_cursor.c.shipment_id == bindparam("b_shipment_id"))
    .values(last_sequence=bindparam("last_sequence"), last_relay=bindparam("last_relay"))
)
_UNSETTLED_OF = select(omnitron_cursor.c.unsettled_sequence, omnitron_cursor.c.unsettled_until).where(
    omnitron_cursor.c.shipment_id == bindparam("shipment_id")
)
_SET_UNSETTLED = (
    update(omnitron_cursor)
    .where(omnitron_cursor.c.shipment_id == bindparam("b_shipment_id"))
    .values(
        unsettled_sequence=bindparam("unsettled_sequence"),
        unsettled_until=bindparam("unsettled_until", type_=UtcDateTime()),
    )
)
_DUE_UNSETTLED = (
    select(omnitron_cursor.c.shipment_id)
    .where(omnitron_cursor.c.unsettled_until <= bindparam("now", type_=UtcDateTime()))
    .order_by(omnitron_cursor.c.unsettled_until)
    .limit(bindparam("limit"))
)
# SKIP LOCKED: a handler relaying a newer change holds the row; the next round comes back to it.
_LOCK_UNSETTLED = (
    select(omnitron_cursor)
    .where(
        omnitron_cursor.c.shipment_id == bindparam("shipment_id"),
        omnitron_cursor.c.unsettled_until <= bindparam("now", type_=UtcDateTime()),
    )
    .with_for_update(skip_locked=True)
)
_WAITING_FOR_PACKING = (
    packages.c.packed.is_(None),
    packages.c.shipped_at.is_not(None),
    packages.c.first_seen_at < bindparam("seen_before", type_=UtcDateTime()),
)
_COUNT_WAITING_FOR_PACKING = select(func.count()).select_from(packages).where(*_WAITING_FOR_PACKING)
_OLDEST_WAITING_FOR_PACKING = (
    select(packages.c.package_id)
    .where(*_WAITING_FOR_PACKING)
    .order_by(packages.c.first_seen_at)
    .limit(bindparam("sample"))
)

# One statement creates the cursor or locks it (a no-op update takes the row lock).
_LOCK_CURSOR = upsert(
    omnitron_cursor,
    ("shipment_id", "last_sequence"),
    ["shipment_id"],
    update={"last_sequence": "omnitron_cursor.last_sequence"},
    returning=["last_sequence"],
)

# The change an Omnitron relay names, read in the round trip that creates or locks the
# shipment's cursor (PostgreSQL; the cursor is the only row it locks).
_LOCK_CURSOR_WITH_CHANGE = text(
    f"WITH cursor AS (INSERT INTO {omnitron_cursor.name} (shipment_id, last_sequence) VALUES (:shipment_id, 0) "
    f"ON CONFLICT (shipment_id) DO UPDATE SET last_sequence = {omnitron_cursor.name}.last_sequence "
    "RETURNING last_sequence) "
    "SELECT cursor.last_sequence, change.sequence AS recorded_sequence, change.data AS recorded_data "
    f"FROM cursor LEFT JOIN {status_changes.name} AS change "
    "ON change.shipment_id = :shipment_id AND change.sequence = :sequence"
)

# A relay sent: the cursor moves on and the relay is logged in one round trip (PostgreSQL
# runs a data-modifying WITH whether or not the INSERT reads it).
_RECORD_SENT = text(
    "WITH moved AS (UPDATE omnitron_cursor SET last_sequence = :sequence, last_relay = :last_relay "
    "WHERE shipment_id = :shipment_id) "
    "INSERT INTO omnitron_relays (shipment_id, sequence, status, outcome, calls, event_id, relayed_at, "
    "superseded_items) "
    "VALUES (:shipment_id, :sequence, :status, :outcome, :calls, :event_id, :relayed_at, :superseded_items)"
).bindparams(bindparam("relayed_at", type_=UtcDateTime()))

# Every package holding one of the shipment's order items (its own included), with when
# it was packed and whether its shipment has Omnitron calls that may still land. The
# holders' item rows stay locked while the change is sent: two packages sharing an item
# send their changes one after the other, and the decision which one the item follows is
# taken under the same locks (always in item order, so two publishers never deadlock).
_holders = package_items.alias("holders")
_mine = package_items.alias("mine")
_me = shipments.alias("me")
_ITEMS_OF_SHIPMENT = (
    select(_mine.c.order_item_id)
    .join(_me, _me.c.package_id == _mine.c.package_id)
    .where(_me.c.id == bindparam("shipment_id"))
)


def _item_holders(items):
    """The rows of every package holding ``items`` (order item ids), locked in one item order."""
    return (
        select(
            _holders.c.order_item_id,
            _holders.c.package_id,
            packages.c.packed_at,
            shipments.c.id.label("shipment_id"),
            omnitron_cursor.c.unsettled_until,
        )
        .join(packages, packages.c.package_id == _holders.c.package_id)
        .join(shipments, shipments.c.package_id == _holders.c.package_id)
        .outerjoin(omnitron_cursor, omnitron_cursor.c.shipment_id == shipments.c.id)
        .where(_holders.c.order_item_id.in_(items))
        .order_by(_holders.c.order_item_id, _holders.c.package_id)
        .with_for_update(of=_holders)
    )


_ITEM_HOLDERS = _item_holders(_ITEMS_OF_SHIPMENT)
# The same for several shipments at once (a batch of Omnitron changes): one statement, so
# the item rows are locked in one item order however many shipments ask.
_ITEMS_OF_SHIPMENTS = (
    select(_mine.c.order_item_id)
    .join(_me, _me.c.package_id == _mine.c.package_id)
    .where(_me.c.id.in_(bindparam("shipment_ids", expanding=True)))
)
_ITEM_HOLDERS_MANY = _item_holders(_ITEMS_OF_SHIPMENTS)


def packed_row(packed: PackagePacked, event_id: str) -> dict:
    return {
        "package_id": packed.package_id,
        "first_seen_at": utcnow(),
        "order_number": packed.order_number,
        "carrier": packed.carrier,
        "delivery_type": packed.delivery_type,
        "packed_at": packed.packed_at,
        "packed": packed.model_dump(mode="json"),
        "packed_event_id": event_id,
    }


def item_rows(packed: PackagePacked) -> list[dict]:
    return [
        {
            "package_id": packed.package_id,
            "order_item_id": item.order_item_id,
            "sku": item.sku,
            "barcode": item.barcode,
            "name": item.name,
            "quantity": item.quantity,
            "deci": item.deci,
        }
        for item in packed.items
    ]


def shipment_row(shipment: Shipment) -> dict:
    now = utcnow()
    return {
        "id": shipment.id,
        "package_id": shipment.package_id,
        "order_number": shipment.order_number,
        "carrier": shipment.carrier,
        "status": shipment.status.value,
        "sequence": shipment.sequence,
        "created_at": now,
        "updated_at": now,
    }


def change_row(change: ShipmentStatusChanged, event_id: str) -> dict:
    return {
        "shipment_id": change.shipment_id,
        "sequence": change.sequence,
        "previous_status": change.previous_status.value if change.previous_status else None,
        "status": change.status.value,
        "carrier_status": change.carrier_status,
        "changed_at": change.changed_at,
        "event_id": event_id,
        "data": change.model_dump_json(),
    }


def _record_packed_many_sqlite():
    # ``_RECORD_PACKED`` as one multi-row statement (a text statement cannot return rows for
    # many parameter sets); the embedded mode only.
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    statement = sqlite_insert(packages)
    return statement.on_conflict_do_update(
        index_elements=["package_id"],
        set_={c: statement.excluded[c] for c in _PACKED_COLUMNS},
        where=packages.c.packed.is_(None),
    ).returning(packages.c.package_id)


# Many packages at once: from a scratch table (shared/bulk.py) into the real one.
_RECORD_PACKED_MANY_PG = (
    "INSERT INTO packages (package_id, first_seen_at, {columns}) "
    'SELECT package_id, first_seen_at, {columns} FROM "{scratch}" '
    "ON CONFLICT (package_id) DO UPDATE SET "
    + ", ".join(f"{name} = excluded.{name}" for name in _PACKED_COLUMNS)
    + " WHERE packages.packed IS NULL RETURNING package_id"
)


def record_packed_many(connection: Connection, rows: list[dict]) -> set[str]:
    """Many :func:`packed_row` at once; the package ids stored now (absent: packed before)."""
    if connection.dialect.name != "postgresql":
        return set(connection.execute(_record_packed_many_sqlite(), rows).scalars())
    scratch = copy_to_scratch(connection, packages, [{**row, "packed": json.dumps(row["packed"])} for row in rows])
    statement = _RECORD_PACKED_MANY_PG.format(columns=", ".join(_PACKED_COLUMNS), scratch=scratch)
    return {package_id for (package_id,) in connection.exec_driver_sql(statement)}


def insert_many(connection: Connection, table, rows: list[dict]) -> None:
    """Many rows of one table at once (COPY on PostgreSQL)."""
    if not rows:
        return
    if connection.dialect.name == "postgresql":
        copy_rows(connection, table.name, rows)
    else:
        connection.execute(insert(table), rows)


class PackageRepository:
    def __init__(self, connection: Connection):
        self._c = connection

    def _lock(self, package_id: str):
        return self._c.execute(_LOCK_PACKAGE, {"package_id": package_id}).first()

    def record_packed(self, packed: PackagePacked, event_id: str) -> bool:
        """Stores what was packed (one statement, ``_RECORD_PACKED``); False when the package
        was packed before (another event id)."""
        if self._c.execute(_RECORD_PACKED, packed_row(packed, event_id)).first() is None:
            return False
        self._c.execute(_INSERT_ITEMS, item_rows(packed))
        return True

    def record_shipped(self, package_id: str, shipped_at: datetime, event_id: str) -> None:
        """Remembers the hand-over even before the package is known, holding its row lock."""
        self._c.execute(
            _RECORD_SHIPPED,
            {
                "package_id": package_id,
                "first_seen_at": utcnow(),
                "shipped_at": shipped_at,
                "shipped_event_id": event_id,
            },
        )

    def lock_handover(self, package_id: str) -> datetime | None:
        """Locks the package (the order every writer follows: package, then shipment); when it was shipped."""
        row = self._lock(package_id)
        return row.shipped_at if row else None

    def waiting_for_packing(self, seen_before: datetime, sample: int = 5) -> tuple[int, list[str]]:
        """Hand-overs first seen before ``seen_before`` whose PackagePacked never came: how many, the oldest few."""
        params = {"seen_before": seen_before, "sample": sample}
        count = self._c.execute(_COUNT_WAITING_FOR_PACKING, params).scalar_one()
        oldest = self._c.execute(_OLDEST_WAITING_FOR_PACKING, params).scalars().all() if count else []
        return count, list(oldest)

    def packed(self, package_id: str) -> PackagePacked | None:
        row = self._c.execute(_PACKED_OF, {"package_id": package_id}).first()
        return _packed(row.packed) if row else None


def _packed(stored) -> PackagePacked | None:
    # Through JSON, as the event was parsed: the stored dump passes the same validation.
    return PackagePacked.model_validate_json(json.dumps(stored)) if stored else None


def _recorded(connection: Connection, row, shipment_id: str, sequence: int) -> ShipmentStatusChanged | None:
    """The recorded change a joined row carries (``recorded_sequence``, ``recorded_data``); None:
    never recorded."""
    if row.recorded_sequence is None:
        return None
    if row.recorded_data is None:  # recorded before migration 0005: rebuilt from its rows
        return ShipmentRepository(connection).recorded_change(shipment_id, sequence)
    return ShipmentStatusChanged.model_validate_json(row.recorded_data)


@dataclass(frozen=True)
class RegistrationContext:
    """What a registration reads before it calls the carrier (services/shipper/handlers.py)."""

    applied: bool  # this consumer applied the event before
    change: ShipmentStatusChanged | None  # the change the event names, as recorded
    shipment: Shipment | None
    packed: PackagePacked | None
    commands_waiting: bool  # operator commands wait for the package (services/commands/waiting.py)


class ShipmentRepository:
    def __init__(self, connection: Connection):
        self._c = connection

    def _load(self, row, items=None) -> Shipment:
        if items is None:
            items = self._c.execute(_ITEMS_OF, {"package_id": row.package_id}).scalars().all()
        return Shipment(
            id=row.id,
            package_id=row.package_id,
            order_number=row.order_number,
            carrier=row.carrier,
            order_item_ids=list(items),
            status=ShipmentStatus(row.status),
            sequence=row.sequence,
            carrier_status=row.carrier_status,
            tracking_number=row.tracking_number,
            tracking_url=row.tracking_url,
            label_url=row.label_url,
            shipping_company=row.shipping_company,
            registered_carriers=json.loads(row.registered_carriers) if row.registered_carriers else [],
            info_updated_at=row.info_updated_at,
        )

    def get(self, shipment_id: str, for_update: bool = False) -> Shipment | None:
        query = _SHIPMENT_FOR_UPDATE if for_update else _SHIPMENT
        row = self._c.execute(query, {"shipment_id": shipment_id}).first()
        return self._load(row) if row else None

    def lock(self, shipment: Shipment) -> Shipment:
        """The shipment's row again, locked: its state as committed now, with the order items
        it was loaded with (a package's items are written once, when it is packed)."""
        row = self._c.execute(_SHIPMENT_FOR_UPDATE, {"shipment_id": shipment.id}).one()
        return self._load(row, shipment.order_item_ids)

    def registration_context(
        self, shipment_id: str, sequence: int, consumer: str, event: Identified
    ) -> RegistrationContext:
        """:class:`RegistrationContext` in two statements (the shipment, then its order items)."""
        row = self._c.execute(
            _REGISTRATION,
            {
                "shipment_id": shipment_id,
                "sequence": sequence,
                "consumer": consumer,
                "source": event.source,
                "event_id": event.id,
            },
        ).first()
        if row is None:  # no such shipment: nothing was ever applied for it
            return RegistrationContext(False, None, None, None, False)
        change = _recorded(self._c, row, shipment_id, sequence)
        return RegistrationContext(row.applied, change, self._load(row), _packed(row.packed), row.commands_waiting)

    def get_by_package(self, package_id: str, for_update: bool = False) -> Shipment | None:
        query = _SHIPMENT_OF_PACKAGE_FOR_UPDATE if for_update else _SHIPMENT_OF_PACKAGE
        row = self._c.execute(query, {"package_id": package_id}).first()
        return self._load(row) if row else None

    def add(self, shipment: Shipment) -> None:
        self._c.execute(_INSERT_SHIPMENT, shipment_row(shipment))

    def save(self, shipment: Shipment, **schedule) -> None:
        """Writes the shipment's state; ``schedule`` sets tracker columns (next_poll_at, lease...)."""
        self._c.execute(
            _SAVE_SHIPMENT,
            {
                "b_shipment_id": shipment.id,
                "status": shipment.status.value,
                "sequence": shipment.sequence,
                "carrier_status": shipment.carrier_status,
                "tracking_number": shipment.tracking_number,
                "tracking_url": shipment.tracking_url,
                "label_url": shipment.label_url,
                "shipping_company": shipment.shipping_company,
                "registered_carriers": json.dumps(shipment.registered_carriers)
                if shipment.registered_carriers
                else None,
                "info_updated_at": shipment.info_updated_at,
                "carrier": shipment.carrier,
                "updated_at": utcnow(),
                **schedule,
            },
        )

    def record_change(self, change, event_id: str) -> None:
        self._c.execute(_INSERT_CHANGE, change_row(change, event_id))

    def recorded_change(self, shipment_id: str, sequence: int) -> ShipmentStatusChanged | None:
        """The change as the services recorded it; None if they never recorded one with that sequence."""
        row = self._c.execute(_RECORDED_CHANGE, {"shipment_id": shipment_id, "sequence": sequence}).first()
        if row is None:
            return None
        if row.data is not None:
            return ShipmentStatusChanged.model_validate_json(row.data)
        # Recorded before migration 0005 kept the change itself: rebuilt from its row and
        # the shipment's (tracking data as it stands now).
        items = self._c.execute(_ITEMS_OF, {"package_id": row.package_id}).scalars().all()
        return ShipmentStatusChanged(
            shipment_id=row.shipment_id,
            package_id=row.package_id,
            order_number=row.order_number,
            carrier=row.carrier,
            tracking_number=row.tracking_number,
            tracking_url=row.tracking_url,
            previous_status=ShipmentStatus(row.previous_status) if row.previous_status else None,
            status=ShipmentStatus(row.status),
            carrier_status=row.carrier_status,
            sequence=row.sequence,
            changed_at=row.changed_at,
            order_item_ids=list(items),
        )


@dataclass(frozen=True)
class FollowedItems:
    """Which of a shipment's order items follow it in Omnitron (CONTRACT.md §2, §5)."""

    #: Held by a package packed later: that package's changes stand for them, not these.
    superseded: frozenset[int]
    #: The latest moment an earlier package's unanswered Omnitron call may still land on an
    #: item this shipment now follows (None: no such call).
    earlier_unsettled_until: datetime | None

    def followed(self, order_item_ids) -> list[int]:
        return [item_id for item_id in order_item_ids if item_id not in self.superseded]


def packed_last(holders) -> object:
    """Of the packages holding one order item, the one it follows: packed last by ``packed_at``,
    the greater package id on a tie (the same answer in every process, whatever came first)."""
    return max(holders, key=lambda holder: (holder.packed_at, holder.package_id))


def followed_items(shipment_id: str, holder_rows) -> FollowedItems:
    by_item: dict[int, list] = {}
    for holder in holder_rows:
        by_item.setdefault(holder.order_item_id, []).append(holder)
    superseded, unsettled = set(), []
    for item_id, holders in by_item.items():
        if packed_last(holders).shipment_id != shipment_id:
            superseded.add(item_id)
            continue
        unsettled += [h.unsettled_until for h in holders if h.shipment_id != shipment_id and h.unsettled_until]
    return FollowedItems(frozenset(superseded), max(unsettled, default=None))


@dataclass(frozen=True)
class UnsettledRelay:
    """A shipment with Omnitron calls that may still land (services/omnitron_publisher/settle.py)."""

    shipment_id: str
    last_sequence: int
    last_relay: dict | None  # {"sequence", "status", "event_id", "calls": [...]} of the newest relay
    unsettled_sequence: int


class OmnitronRelayLog:
    """Per shipment, the newest sequence relayed to Omnitron, and every relay made."""

    def __init__(self, connection: Connection):
        self._c = connection

    def lock_last_sequence(self, shipment_id: str) -> int:
        return self._c.execute(_LOCK_CURSOR, {"shipment_id": shipment_id, "last_sequence": 0}).scalar_one()

    def lock_for_change(self, shipment_id: str, sequence: int) -> tuple[ShipmentStatusChanged | None, int]:
        """The recorded change with this sequence (None: never recorded), and the shipment's
        last relayed sequence, its cursor locked (:meth:`lock_last_sequence`); one round trip
        on PostgreSQL."""
        if self._c.dialect.name != "postgresql":
            change = ShipmentRepository(self._c).recorded_change(shipment_id, sequence)
            return change, self.lock_last_sequence(shipment_id)
        row = self._c.execute(_LOCK_CURSOR_WITH_CHANGE, {"shipment_id": shipment_id, "sequence": sequence}).one()
        return _recorded(self._c, row, shipment_id, sequence), row.last_sequence

    def lock_followed_items(self, shipment_id: str) -> FollowedItems:
        """Locks the rows of every package holding the shipment's order items (call with the
        cursor locked, before sending); which of its items follow the shipment."""
        return followed_items(shipment_id, self._c.execute(_ITEM_HOLDERS, {"shipment_id": shipment_id}).all())

    def lock_followed_items_of(self, shipment_ids) -> dict[str, FollowedItems]:
        """:meth:`lock_followed_items` for several shipments, their item rows locked by one statement."""
        rows = self._c.execute(_ITEM_HOLDERS_MANY, {"shipment_ids": sorted(shipment_ids)}).all()
        found = {}
        for shipment_id in shipment_ids:
            mine = {row.order_item_id for row in rows if row.shipment_id == shipment_id}
            found[shipment_id] = followed_items(shipment_id, [row for row in rows if row.order_item_id in mine])
        return found

    def record_skipped(self, change, event_id: str) -> None:
        self._c.execute(
            _INSERT_RELAY,
            self._relay(change.shipment_id, change.sequence, change.status.value, "skipped_stale", 0, event_id),
        )

    def record_sent(self, change, calls: list[dict], event_id: str, superseded_items=()) -> None:
        """The cursor moves on to ``change``, whose calls (as JSON) are kept as the newest relay;
        ``superseded_items``: its order items left out, held by a package packed later."""
        relay = self._relay(change.shipment_id, change.sequence, change.status.value, "sent", len(calls), event_id)
        relay["superseded_items"] = json.dumps(sorted(superseded_items)) if superseded_items else None
        relay["last_relay"] = json.dumps(
            {"sequence": change.sequence, "status": change.status.value, "event_id": event_id, "calls": calls},
            separators=(",", ":"),
        )
        if self._c.dialect.name == "postgresql":
            self._c.execute(_RECORD_SENT, relay)
            return
        self._c.execute(
            _MOVE_CURSOR,
            {
                "b_shipment_id": change.shipment_id,
                "last_sequence": change.sequence,
                "last_relay": relay.pop("last_relay"),
            },
        )
        self._c.execute(_INSERT_RELAY, relay)

    def record_resent(self, shipment_id: str, last_relay: dict) -> None:
        self._c.execute(
            _INSERT_RELAY,
            self._relay(
                shipment_id,
                last_relay["sequence"],
                last_relay["status"],
                "resent",
                len(last_relay["calls"]),
                last_relay["event_id"],
            ),
        )

    @staticmethod
    def _relay(shipment_id: str, sequence: int, status: str, outcome: str, calls: int, event_id: str) -> dict:
        return {
            "shipment_id": shipment_id,
            "sequence": sequence,
            "status": status,
            "outcome": outcome,
            "calls": calls,
            "event_id": event_id,
            "relayed_at": utcnow(),
        }

    # -- calls that may still land (call with the cursor locked) --------------------------
    def mark_unsettled(self, shipment_id: str, sequence: int, until: datetime) -> None:
        """A call for ``sequence`` got no answer: it may land at Omnitron until ``until``."""
        row = self._c.execute(_UNSETTLED_OF, {"shipment_id": shipment_id}).one()
        self._c.execute(
            _SET_UNSETTLED,
            {
                "b_shipment_id": shipment_id,
                "unsettled_sequence": max(row.unsettled_sequence or 0, sequence),
                "unsettled_until": max(row.unsettled_until or until, until),
            },
        )

    def due_unsettled(self, now: datetime, limit: int) -> list[str]:
        return list(self._c.execute(_DUE_UNSETTLED, {"now": now, "limit": limit}).scalars())

    def lock_unsettled(self, shipment_id: str, now: datetime) -> UnsettledRelay | None:
        """The shipment's unsettled state, locked; None if it settled or another holds the lock."""
        row = self._c.execute(_LOCK_UNSETTLED, {"shipment_id": shipment_id, "now": now}).first()
        if row is None:
            return None
        return UnsettledRelay(
            row.shipment_id,
            row.last_sequence,
            json.loads(row.last_relay) if row.last_relay else None,
            row.unsettled_sequence,
        )

    def postpone_unsettled(self, shipment_id: str, sequence: int, until: datetime) -> None:
        self._c.execute(
            _SET_UNSETTLED, {"b_shipment_id": shipment_id, "unsettled_sequence": sequence, "unsettled_until": until}
        )

    def settled(self, shipment_id: str) -> None:
        self._c.execute(
            _SET_UNSETTLED, {"b_shipment_id": shipment_id, "unsettled_sequence": None, "unsettled_until": None}
        )
