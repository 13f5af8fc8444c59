"""What the shipper's registration of a ``pending`` shipment asks of the commands.

- Before it: the package's waiting commands are taken (waiting.py); a carrier without
  integration is never registered (manual.py).
- After it: a registration that was not recorded because the shipment was cancelled, or
  moved to another carrier, while the carrier answered is deleted at the carrier it was
  sent to (CONTRACT.md §2: "a registration request already sent is deleted at the carrier
  whether or not its answer came").
"""

from __future__ import annotations

from contracts import ShipmentStatus
from services.carriers.directory import CarrierDirectory
from services.commands.carrier_calls import delete_best_effort
from services.domain.model import Shipment
from shared.logging import get_logger

log = get_logger(service="shipper")


def may_record(shipment: Shipment, registered_at: str) -> bool:
    """Whether a registration answered by ``registered_at`` may be recorded on the shipment now."""
    return shipment.status is ShipmentStatus.PENDING and shipment.carrier == registered_at


def orphaned(shipment: Shipment, registered_at: str) -> bool:
    """A registration answered by ``registered_at`` that the shipment no longer wants."""
    return shipment.status is ShipmentStatus.CANCELLED or shipment.carrier != registered_at


def delete_orphan(carriers: CarrierDirectory, registered_at: str, shipment_id: str, attempts: int = 3) -> None:
    log.info(
        "registration answered after the shipment was cancelled or moved to another carrier: deleted there",
        carrier=registered_at,
    )
    delete_best_effort(carriers, registered_at, shipment_id, attempts)
