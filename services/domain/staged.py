"""Staged repositories: a batch's fast path, where units of work stage rows instead of writing.

In a batch (shared/batch.py) a unit of work first runs against these.  Inserts are
staged; the two questions the packer asks — "is this event new?" and "is this package
packed for the first time?" — get the answer they almost always get, yes, and that
answer is staged as an expectation.  Once every handler of the batch has run,
:meth:`Staging.flush` writes all staged rows with one multi-row statement per table and
checks the expectations against what those statements return.  A surprise raises
:class:`~shared.batch.Replay`, and the batch is applied again unit by unit, in
savepoints, where the real repositories ask the database.  So does any question these
repositories cannot answer without the database.
"""

from __future__ import annotations

from contracts import PackagePacked
from services.domain.model import Shipment
from services.domain.repository import (
    change_row,
    insert_many,
    item_rows,
    packed_row,
    record_packed_many,
    shipment_row,
)
from services.domain.tables import package_items, shipments, status_changes
from shared.batch import Replay
from shared.inbox import Identified, inbox_key, inbox_row, record_many
from shared.outbox import outbox_row, outbox_table


class Staging:
    """Everything the units of one batch staged; written together by :meth:`flush`."""

    def __init__(self):
        self.inbox: list[dict] = []
        self.packed: list[dict] = []
        # In the order their foreign keys need them written.
        self.rows = {package_items: [], shipments: [], status_changes: [], outbox_table: []}

    def unit(self) -> "StagedUnit":
        return StagedUnit(self)

    def flush(self, connection) -> None:
        inbox_keys = [inbox_key(row) for row in self.inbox]
        if len(set(inbox_keys)) != len(inbox_keys):
            raise Replay("an event twice in one batch")
        package_ids = [row["package_id"] for row in self.packed]
        if len(set(package_ids)) != len(package_ids):
            raise Replay("a package packed twice in one batch")
        if self.inbox and record_many(connection, self.inbox) != set(inbox_keys):
            raise Replay("an event applied before")
        if self.packed and record_packed_many(connection, self.packed) != set(package_ids):
            raise Replay("a package packed before")
        for table, rows in self.rows.items():
            insert_many(connection, table, rows)


class StagedUnit:
    """One unit of work's staged rows: handed to the batch by :meth:`keep` on commit, else dropped."""

    def __init__(self, staging: Staging):
        self._staging = staging
        self.inbox: list[dict] = []
        self.packed: list[dict] = []
        self.rows: dict = {table: [] for table in staging.rows}

    def keep(self) -> None:
        self._staging.inbox += self.inbox
        self._staging.packed += self.packed
        for table, rows in self.rows.items():
            self._staging.rows[table] += rows


class _NeedsDatabase:
    """Anything not staged: the batch is applied the careful way, where the database answers."""

    def __init__(self, name: str):
        self._name = name

    def __getattr__(self, attribute: str):
        if attribute.startswith("_"):
            raise AttributeError(attribute)
        raise Replay(f"{self._name}.{attribute} needs the database")


class StagedInbox(_NeedsDatabase):
    def __init__(self, unit: StagedUnit, consumer: str):
        super().__init__("inbox")
        self._unit, self._consumer = unit, consumer

    def first_time(self, event: Identified) -> bool:
        self._unit.inbox.append(inbox_row(self._consumer, event))
        return True  # checked when the batch is written


class StagedPackages(_NeedsDatabase):
    def __init__(self, unit: StagedUnit):
        super().__init__("packages")
        self._unit = unit

    def record_packed(self, packed: PackagePacked, event_id: str) -> bool:
        self._unit.packed.append(packed_row(packed, event_id))
        self._unit.rows[package_items] += item_rows(packed)
        return True  # checked when the batch is written


class StagedShipments(_NeedsDatabase):
    def __init__(self, unit: StagedUnit):
        super().__init__("shipments")
        self._unit = unit

    def add(self, shipment: Shipment) -> None:
        self._unit.rows[shipments].append(shipment_row(shipment))

    def record_change(self, change, event_id: str) -> None:
        self._unit.rows[status_changes].append(change_row(change, event_id))


class StagedOutbox:
    def __init__(self, unit: StagedUnit):
        self._unit = unit
        self.added = 0

    def add(self, event_id: str, event_type: str, routing_key: str, body: bytes) -> None:
        self._unit.rows[outbox_table].append(outbox_row(event_id, event_type, routing_key, body))
        self.added += 1


def staged_repositories(unit: StagedUnit, consumer: str) -> dict:
    """The unit of work's attributes, staged."""
    return {
        "inbox": StagedInbox(unit, consumer),
        "outbox": StagedOutbox(unit),
        "packages": StagedPackages(unit),
        "shipments": StagedShipments(unit),
        "omnitron_relays": _NeedsDatabase("omnitron_relays"),
    }
