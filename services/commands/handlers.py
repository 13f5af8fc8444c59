"""The three operator commands (CONTRACT.md §2, "Operator commands"), as the contract's tables say.

Each handler is given the unit of work bound to its event, as every handler is. A command
whose package is not packed yet waits (waiting.py: kept in a transaction aside, which
records nothing in the inbox). Otherwise entering the bound unit records the command in
the inbox (one applied before ends there, ``AlreadyApplied``: acked, nothing changed), and
the handler locks the package row, then the shipment row (the order every writer keeps),
judges the command against the shipment as it stands, and applies it as one numbered
change, committed with its inbox row. A carrier call (a deletion, a registration at a new
carrier) happens between two transactions, like the shipper's own registration: the
first ends without a commit (the command is recorded only by the second), and the second
judges again, so a change that raced the call is never overwritten. A refusal is a
``PermanentError``: the message is dead-lettered with the reason, its inbox row rolled
back, and its replay is judged as new.
"""

from __future__ import annotations

from contracts import CloudEvent, ShipmentStatus
from contracts.commands import SETTABLE_FROM, PackageCancelled, ShipmentInfoUpdated, ShipmentStatusSet
from contracts.statuses import RANK
from services.carriers.directory import CarrierDirectory
from services.commands.carrier_calls import delete_at_carrier, delete_best_effort
from services.commands.manual import ship_by_hand, without_integration
from services.commands.waiting import keep_if_unpacked
from services.domain.model import Shipment
from services.domain.uow import UnitOfWork
from shared.db import utcnow
from shared.failure import PermanentError, TransientError
from shared.faults import crash_point
from shared.http import PermanentHTTPError
from shared.logging import get_logger

log = get_logger(service="shipper")

HANDED_OVER = "already handed to the carrier (a return is another flow)"
#: Tracker columns that stop a shipment's polling and drop an answer in flight (its lease).
STOP_TRACKING = {"next_poll_at": None, "lease_owner": None, "lease_until": None}


def _handed_over(shipment: Shipment, shipped_at) -> bool:
    return RANK[shipment.status] >= RANK[ShipmentStatus.SHIPPED] or shipped_at is not None


def _locked(uow: UnitOfWork, package_id: str):
    """(hand-over time, shipment) under the package's and the shipment's row locks."""
    shipped_at = uow.packages.lock_handover(package_id)
    return shipped_at, uow.shipments.get_by_package(package_id, for_update=True)


# ---- PackageCancelled ------------------------------------------------------------------


def cancel_package(event: CloudEvent, uow: UnitOfWork, carriers: CarrierDirectory) -> None:
    cancelled: PackageCancelled = event.data
    if keep_if_unpacked(uow, event):
        return
    with uow:
        shipped_at, shipment = _locked(uow, cancelled.package_id)
        if shipment.status is ShipmentStatus.CANCELLED:
            uow.commit()
            log.info("already cancelled; nothing to do")
            return
        if shipment.status.is_final or _handed_over(shipment, shipped_at):
            raise PermanentError(
                f"cannot cancel {cancelled.package_id}: {HANDED_OVER}; shipment is "
                f"{shipment.status.value}" + (", a PackageShipped has arrived" if shipped_at else "")
            )
        if shipment.status is ShipmentStatus.PENDING:
            # Never registered: the carrier is never asked. A registration in flight is
            # deleted by the shipper once its answer comes (services/commands/registration.py).
            _cancel(uow, shipment, cancelled)
            uow.commit()
            return
        carrier, shipment_id = shipment.carrier, shipment.id
        # registered: not committed, so the cancellation is recorded only after the deletion.
    # The deletion at the carrier, outside a transaction (repeatable: 404 counts as done).
    try:
        delete_at_carrier(carriers, carrier, shipment_id)
    except PermanentHTTPError as exc:
        raise PermanentError(f"the carrier refused the cancellation: HTTP {exc.status}: {exc.message}") from exc
    crash_point("after_carrier_deletion")
    with uow:  # a copy that committed meanwhile: AlreadyApplied
        shipped_at, shipment = _locked(uow, cancelled.package_id)
        if shipment.status is not ShipmentStatus.CANCELLED:
            if shipment.status.is_final or _handed_over(shipment, shipped_at):
                raise PermanentError(
                    f"cannot cancel {cancelled.package_id}: {HANDED_OVER} while its registration "
                    f"was deleted at {carrier}; shipment is {shipment.status.value}"
                )
            _cancel(uow, shipment, cancelled)
        uow.commit()


def _cancel(uow: UnitOfWork, shipment: Shipment, cancelled: PackageCancelled) -> None:
    shipment.move_to(ShipmentStatus.CANCELLED, utcnow(), reason=cancelled.reason)
    uow.save(shipment, **STOP_TRACKING)
    log.info("package cancelled", sequence=shipment.sequence)


# ---- ShipmentStatusSet -----------------------------------------------------------------


def set_shipment_status(event: CloudEvent, uow: UnitOfWork) -> None:
    command: ShipmentStatusSet = event.data
    target = command.shipment_status
    if keep_if_unpacked(uow, event):
        return
    with uow:
        _, shipment = _locked(uow, command.package_id)
        current = shipment.status
        if current is target:
            uow.commit()
            log.info("status set to the status it has; nothing to do", status=target.value)
            return
        if current not in SETTABLE_FROM:
            raise PermanentError(
                f"cannot set {command.package_id} to {target.value}: a status is set by hand only "
                f"from shipped, ready_for_pickup, attempted_delivery or delivery_failed; the shipment "
                f"is {current.value}"
            )
        if not shipment.set_by_hand(target, utcnow(), command.reason):
            raise PermanentError(
                f"cannot set {command.package_id} to {target.value}: earlier than its status "
                f"{current.value} (a status never moves back)"
            )
        uow.save(shipment, **(STOP_TRACKING if target.is_final else {}))
        uow.commit()
        log.info("status set by hand", status=target.value, previous_status=current.value, sequence=shipment.sequence)


# ---- ShipmentInfoUpdated ---------------------------------------------------------------


def _judge_info(info: ShipmentInfoUpdated, shipment: Shipment, carriers: CarrierDirectory) -> str | None:
    """Raises the refusal; the new carrier's code when the update changes the carrier."""
    what = f"cannot update the shipment info of {info.package_id}"
    if shipment.status in (ShipmentStatus.DELIVERY_FAILED, ShipmentStatus.CANCELLED):
        raise PermanentError(f"{what}: the shipment is {shipment.status.value}")
    new_carrier = info.carrier if info.carrier is not None and info.carrier != shipment.carrier else None
    if new_carrier is not None and new_carrier not in carriers:
        raise PermanentError(f"{what}: unknown carrier {new_carrier!r}: not in the carriers file")
    target = new_carrier or shipment.carrier
    if not without_integration(carriers, target):
        if info.tracking_number is not None or info.tracking_url is not None:
            raise PermanentError(
                f"{what}: {target} is an integrated carrier: its own tracking number and URL "
                "stand (tracking follows the carrier's shipmentId)"
            )
        if new_carrier is not None:
            if shipment.status not in (ShipmentStatus.PENDING, ShipmentStatus.REGISTERED):
                raise PermanentError(
                    f"{what}: a change to the integrated carrier {new_carrier} is allowed only in "
                    f"pending and registered; the shipment is {shipment.status.value}"
                )
            if new_carrier in shipment.registered_carriers:
                raise PermanentError(f"{what}: the shipment was registered at {new_carrier} before")
    return new_carrier


def update_shipment_info(event: CloudEvent, uow: UnitOfWork, carriers: CarrierDirectory, max_attempts: int = 3) -> None:
    info: ShipmentInfoUpdated = event.data
    if keep_if_unpacked(uow, event):
        return
    with uow:
        _, shipment = _locked(uow, info.package_id)
        if shipment.info_updated_at is not None and info.updated_at < shipment.info_updated_at:
            uow.commit()
            log.info(
                "older than the shipment info update already applied; nothing to do",
                updated_at=info.updated_at.isoformat(),
                applied_updated_at=shipment.info_updated_at.isoformat(),
            )
            return
        new_carrier = _judge_info(info, shipment, carriers)
        old = (shipment.carrier, shipment.status, shipment.sequence)
        packed = uow.packages.packed(info.package_id)
        # Judged: not committed, so the update is recorded with its change below.
    registration = None
    if new_carrier is not None and carriers.integrated(new_carrier):
        # The old registration stands until the new carrier accepts; its 4xx refuses the update.
        try:
            registration = carriers.client(new_carrier).register(shipment.id, packed)
        except PermanentHTTPError as exc:
            raise PermanentError(
                f"the carrier {new_carrier} refused the registration, so the update is refused: "
                f"HTTP {exc.status}: {exc.message}"
            ) from exc
        crash_point("after_carrier_registration")
    with uow:  # a copy that committed meanwhile: AlreadyApplied
        shipped_at, shipment = _locked(uow, info.package_id)
        if (shipment.carrier, shipment.status) != old[:2]:
            # Something moved while the new carrier answered: judge the update again.
            raise TransientError("the shipment changed while the new carrier answered; judged again")
        old_carrier, was_registered = shipment.carrier, old_carrier_registered(shipment)
        _apply_info(shipment, info, new_carrier, registration, carriers)
        schedule = {}
        if new_carrier is not None:
            schedule = dict(STOP_TRACKING)  # no answer from the old carrier is recorded after this commit
            if registration is not None and shipment.status is ShipmentStatus.PENDING:
                shipment.register(
                    registration.tracking_number,
                    registration.tracking_url,
                    registration.label_url,
                    registration.carrier_status,
                    utcnow(),
                )
                if shipped_at is not None and shipment.move_to(ShipmentStatus.SHIPPED, utcnow()):
                    schedule = {"next_poll_at": utcnow(), "lease_owner": None, "lease_until": None}
            elif registration is None and shipped_at is not None and ship_by_hand(shipment, None, utcnow()):
                pass  # to a carrier without integration, after its hand-over: shipped now
            else:
                shipment.record_info(utcnow())
        else:
            shipment.record_info(utcnow())
        uow.save(shipment, **schedule)
        uow.commit()
        log.info(
            "shipment info updated", carrier=shipment.carrier, previous_carrier=old_carrier, sequence=shipment.sequence
        )
    if new_carrier is not None and was_registered:
        delete_best_effort(carriers, old_carrier, shipment.id, max_attempts)


def old_carrier_registered(shipment: Shipment) -> bool:
    return shipment.carrier in shipment.registered_carriers or shipment.status is not ShipmentStatus.PENDING


def _apply_info(
    shipment: Shipment, info: ShipmentInfoUpdated, new_carrier: str | None, registration, carriers: CarrierDirectory
) -> None:
    shipment.info_updated_at = info.updated_at
    if new_carrier is not None:
        shipment.carrier = new_carrier
        if registration is not None:
            shipment.tracking_number = registration.tracking_number
            shipment.tracking_url = registration.tracking_url
            shipment.label_url = registration.label_url
            shipment.carrier_status = registration.carrier_status
            if shipment.status is not ShipmentStatus.PENDING and new_carrier not in shipment.registered_carriers:
                shipment.registered_carriers.append(new_carrier)
        else:  # a carrier without integration: its tracking is what the operator gives
            shipment.tracking_number = shipment.tracking_url = shipment.label_url = None
            shipment.carrier_status = None
    if without_integration(carriers, shipment.carrier):
        if info.tracking_number is not None:
            shipment.tracking_number = info.tracking_number
        if info.tracking_url is not None:
            shipment.tracking_url = info.tracking_url
    if info.shipping_company is not None:
        shipment.shipping_company = info.shipping_company
