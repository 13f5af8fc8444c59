"""Carrier registration of pending shipments, and the hand-over (PackageShipped).

Both paths lock the package row first, then the shipment row, so a PackageShipped
that races a registration is seen by whichever of the two commits second.
"""

from __future__ import annotations

from contracts import CloudEvent, PackageShipped, ShipmentStatus, ShipmentStatusChanged
from services.carriers.directory import CarrierDirectory
from services.commands import manual, waiting
from services.commands import registration as commands_registration
from services.domain.model import Shipment
from services.domain.refusals import never_recorded
from services.domain.uow import AlreadyApplied, UnitOfWork
from shared.db import utcnow
from shared.failure import PermanentError
from shared.faults import crash_point
from shared.logging import get_logger

log = get_logger(service="shipper")


def _ship_if_handed_over(shipment: Shipment, shipped_at) -> dict:
    """Moves a registered shipment to shipped when the hand-over is known; its tracker schedule."""
    if shipped_at is not None and shipment.status is ShipmentStatus.REGISTERED:
        now = utcnow()
        if shipment.move_to(ShipmentStatus.SHIPPED, now):
            return {"next_poll_at": now}
    return {}


def register_with_carrier(event: CloudEvent, uow: UnitOfWork, carriers: CarrierDirectory) -> None:
    named: ShipmentStatusChanged = event.data
    # Read outside a transaction, in one statement: what the services recorded, not what
    # the message says (it names the change, no more), and whether it was applied before.
    with uow.reading() as reads:
        read = reads.shipments.registration_context(named.shipment_id, named.sequence, uow.consumer, event)
    if read.applied:
        raise AlreadyApplied()  # a copy of an event applied before: no second carrier call
    change, shipment, packed = read.change, read.shipment, read.packed
    if change is None or packed is None:
        # Events leave the outbox only after their commit: a genuine one always finds its change.
        raise never_recorded(named, shipment is not None)
    if change.status is not ShipmentStatus.PENDING:
        log.warning(
            "registration requested for a change that is not 'pending'; nothing to do",
            recorded_status=change.status.value,
            sequence=change.sequence,
        )
        return
    if manual.without_integration(carriers, shipment.carrier):  # never registered (CONTRACT.md §4)
        return manual.open_without_integration(event, uow, shipment.id)
    if read.commands_waiting:  # operator commands
        # Aside: what it commits records no inbox row; this change is applied by the block below.
        shipment = waiting.before_registration(uow.aside(), shipment.id)
    registration = None
    if shipment.status is ShipmentStatus.PENDING:
        if shipment.carrier not in carriers:
            raise PermanentError(f"unknown carrier {shipment.carrier!r}: not in the carriers file")
        # Outside the transaction: the carrier answers the same shipmentId with the same
        # tracking number, so a crash before the commit below only repeats this call.
        registered_at = shipment.carrier
        registration = carriers.client(shipment.carrier).register(shipment.id, packed)
        crash_point("after_carrier_registration")
    with uow:
        shipped_at = uow.packages.lock_handover(shipment.package_id)
        shipment = uow.shipments.lock(shipment)
        if registration is not None and commands_registration.may_record(shipment, registered_at):
            shipment.register(
                registration.tracking_number,
                registration.tracking_url,
                registration.label_url,
                registration.carrier_status,
                utcnow(),
            )
            schedule = _ship_if_handed_over(shipment, shipped_at)
            uow.save(shipment, **schedule)
            log.info("registered with carrier", tracking_number=shipment.tracking_number, shipped=bool(schedule))
        uow.commit()
    if registration is not None and commands_registration.orphaned(shipment, registered_at):
        commands_registration.delete_orphan(carriers, registered_at, shipment.id)


def mark_shipped(event: CloudEvent, uow: UnitOfWork, carriers: CarrierDirectory | None = None) -> None:
    shipped: PackageShipped = event.data
    with uow:
        uow.packages.record_shipped(shipped.package_id, shipped.shipped_at, event.id)
        # The shipment's row locked (package, then shipment).
        shipment = uow.shipments.get_by_package(shipped.package_id, for_update=True)
        if manual.on_handover(uow, shipped, shipment, carriers):  # a carrier without integration: shipped by hand
            uow.commit()
            return
        status = shipment.status if shipment is not None else None
        if status is ShipmentStatus.REGISTERED:
            schedule = _ship_if_handed_over(shipment, shipped.shipped_at)
            if schedule:
                uow.save(shipment, **schedule)
        if status is None or status is ShipmentStatus.PENDING:
            log.info("hand-over recorded; applied once the shipment is registered")
        uow.commit()
