"""Carriers without integration (CONTRACT.md §4): never registered, never polled.

A ``pending`` (or ``registered``: a carrier changed to one without integration) shipment
becomes ``shipped`` on its PackageShipped, with the ``tracking_number``, ``tracking_url``
and ``shipping_company`` given there; later statuses come only from ShipmentStatusSet.
The hand-given fields are kept on the package row, since a PackageShipped may come before
its PackagePacked.
"""

from __future__ import annotations

from sqlalchemy import bindparam, select, update

from contracts import CloudEvent, PackageShipped, ShipmentStatus
from services.carriers.directory import CarrierDirectory
from services.domain.model import Shipment
from services.domain.tables import packages
from services.domain.uow import UnitOfWork
from shared.db import utcnow
from shared.logging import get_logger

log = get_logger(service="shipper")

HANDOVER_FIELDS = ("tracking_number", "tracking_url", "shipping_company")
_KEEP_HANDOVER = (
    update(packages)
    .where(packages.c.package_id == bindparam("b_package_id"), packages.c.handover.is_(None))
    .values(handover=bindparam("handover", type_=packages.c.handover.type))
)
_HANDOVER_OF = select(packages.c.handover).where(packages.c.package_id == bindparam("package_id"))


def without_integration(carriers: CarrierDirectory | None, carrier: str) -> bool:
    return carriers is not None and carrier in getattr(carriers, "manual", ())


def handover_fields(shipped: PackageShipped) -> dict:
    return {name: getattr(shipped, name) for name in HANDOVER_FIELDS if getattr(shipped, name) is not None}


def ship_by_hand(shipment: Shipment, handover: dict | None, at) -> bool:
    """A ``pending`` or ``registered`` shipment of a carrier without integration is shipped,
    with what the hand-over gave. False: nothing to do (shipped before, or final)."""
    if shipment.status not in (ShipmentStatus.PENDING, ShipmentStatus.REGISTERED):
        return False
    handover = handover or {}
    for name in HANDOVER_FIELDS:
        if handover.get(name) is not None:
            setattr(shipment, name, handover[name])
    return shipment.move_to(ShipmentStatus.SHIPPED, at)


def on_handover(
    uow: UnitOfWork, shipped: PackageShipped, shipment: Shipment | None, carriers: CarrierDirectory | None
) -> bool:
    """Inside the PackageShipped's unit of work, after the hand-over was recorded and the
    shipment locked: keeps the hand-given fields; for a carrier without integration applies
    the hand-over itself (True: the caller has nothing more to do)."""
    fields = handover_fields(shipped)
    if fields:
        uow._connection.execute(_KEEP_HANDOVER, {"b_package_id": shipped.package_id, "handover": fields})
    if shipment is None:
        return False
    if not without_integration(carriers, shipment.carrier):
        if fields:
            log.warning(
                "tracking fields of a hand-over ignored: the integrated carrier's own stand",
                carrier=shipment.carrier,
                fields=sorted(fields),
            )
        return False
    if ship_by_hand(
        shipment, uow._connection.execute(_HANDOVER_OF, {"package_id": shipped.package_id}).scalar(), utcnow()
    ):
        uow.save(shipment, next_poll_at=None)
        log.info(
            "shipped without carrier integration", carrier=shipment.carrier, tracking_number=shipment.tracking_number
        )
    return True


def open_without_integration(event: CloudEvent, uow: UnitOfWork, shipment_id: str) -> None:
    """The shipper's ``pending`` change of a shipment whose carrier has no integration: nothing
    is registered; a hand-over that came first ships it now."""
    with uow:  # bound to the event: a copy applied before ends here (AlreadyApplied)
        shipment = uow.shipments.get(shipment_id)
        shipped_at = uow.packages.lock_handover(shipment.package_id)
        shipment = uow.shipments.get(shipment_id, for_update=True)
        from services.commands.waiting import take_waiting

        take_waiting(uow, shipment.package_id, shipment, shipped_at is not None)
        if shipped_at is not None and ship_by_hand(
            shipment, uow._connection.execute(_HANDOVER_OF, {"package_id": shipment.package_id}).scalar(), utcnow()
        ):
            uow.save(shipment, next_poll_at=None)
            log.info("shipped without carrier integration", carrier=shipment.carrier)
        else:
            log.info(
                "carrier without integration: not registered; shipped by its PackageShipped", carrier=shipment.carrier
            )
        uow.commit()
