"""The shipment aggregate: its status moves only forward, one numbered change at a time."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from contracts import PackagePacked, ShipmentStatus, ShipmentStatusChanged, can_transition
from contracts.ids import uuid4


def same_packing(first: PackagePacked, second: PackagePacked) -> bool:
    """Equal data as the contract types it: values compared parsed (``"120.50"`` = ``120.5``,
    one instant in any offset, absent = ``null``, unknown fields ignored), items in any order."""

    def by_item(packed: PackagePacked) -> PackagePacked:
        return packed.model_copy(update={"items": sorted(packed.items, key=lambda item: item.order_item_id)})

    return by_item(first) == by_item(second)


@dataclass
class Shipment:
    id: str
    package_id: str
    order_number: str
    carrier: str
    order_item_ids: list[int]
    status: ShipmentStatus | None = None
    sequence: int = 0
    carrier_status: str | None = None
    tracking_number: str | None = None
    tracking_url: str | None = None
    label_url: str | None = None
    shipping_company: str | None = None  # hand-given (PackageShipped, ShipmentInfoUpdated)
    registered_carriers: list[str] = field(default_factory=list)  # every carrier it was registered at
    info_updated_at: datetime | None = None  # the newest ShipmentInfoUpdated applied
    changes: list[ShipmentStatusChanged] = field(default_factory=list, repr=False)

    @classmethod
    def open_for(cls, packed: PackagePacked, at: datetime) -> "Shipment":
        """A new, empty shipment for a packed package, in ``pending``."""
        shipment = cls(
            id=uuid4(),
            package_id=packed.package_id,
            order_number=packed.order_number,
            carrier=packed.carrier,
            order_item_ids=[item.order_item_id for item in packed.items],
        )
        shipment.move_to(ShipmentStatus.PENDING, at)
        return shipment

    def move_to(
        self, status: ShipmentStatus, at: datetime, carrier_status: str | None = None, reason: str | None = None
    ) -> bool:
        """Applies a status if it moves forward; records the change. False: stale or repeated."""
        if not can_transition(self.status, status):
            return False
        self._record(status, at, carrier_status, reason)
        return True

    def set_by_hand(self, status: ShipmentStatus, at: datetime, reason: str | None) -> bool:
        """An employee's ShipmentStatusSet: forward only, or ``delivery_failed`` → ``delivered``
        (the one way out of a final status); an empty ``carrier_status``. False: nothing to do."""
        out_of_failed = self.status is ShipmentStatus.DELIVERY_FAILED and status is ShipmentStatus.DELIVERED
        if not out_of_failed and not can_transition(self.status, status):
            return False
        self._record(status, at, "", reason)
        return True

    def record_info(self, at: datetime) -> None:
        """An information change (ShipmentInfoUpdated): the status stays, the sequence grows."""
        self._record(self.status, at, None, None)

    def _record(self, status: ShipmentStatus, at: datetime, carrier_status: str | None, reason: str | None) -> None:
        previous, self.status = self.status, status
        self.sequence += 1
        if carrier_status is not None:
            self.carrier_status = carrier_status
        self.changes.append(
            ShipmentStatusChanged(
                shipment_id=self.id,
                package_id=self.package_id,
                order_number=self.order_number,
                carrier=self.carrier,
                tracking_number=self.tracking_number,
                tracking_url=self.tracking_url,
                previous_status=previous,
                status=status,
                carrier_status=carrier_status,
                sequence=self.sequence,
                changed_at=at,
                order_item_ids=self.order_item_ids,
                label_url=self.label_url,
                shipping_company=self.shipping_company,
                reason=reason,
            )
        )

    def register(
        self,
        tracking_number: str,
        tracking_url: str | None,
        label_url: str | None,
        carrier_status: str | None,
        at: datetime,
    ) -> bool:
        if self.status is not ShipmentStatus.PENDING:
            return False
        self.tracking_number = tracking_number
        self.tracking_url = tracking_url or self.tracking_url
        self.label_url = label_url or self.label_url
        if self.carrier not in self.registered_carriers:
            self.registered_carriers.append(self.carrier)
        return self.move_to(ShipmentStatus.REGISTERED, at, carrier_status)
