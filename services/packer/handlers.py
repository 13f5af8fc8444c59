"""PackagePacked → the package, its items and a shipment in ``pending``."""

from __future__ import annotations

from collections.abc import Container

from contracts import CloudEvent, PackagePacked
from services.domain.model import Shipment, same_packing
from services.domain.refusals import conflicting
from services.domain.uow import UnitOfWork
from shared.db import utcnow
from shared.failure import PermanentError
from shared.logging import get_logger

log = get_logger(service="packer")

ALREADY_PACKED = "already packed with other content"


def open_shipment(event: CloudEvent, uow: UnitOfWork, carriers: Container[str]) -> None:
    packed: PackagePacked = event.data
    if packed.carrier not in carriers:
        raise PermanentError(f"unknown carrier {packed.carrier!r}: not in the carriers file")
    with uow:
        if uow.packages.record_packed(packed, event.id):
            uow.add(Shipment.open_for(packed, utcnow()))
        elif same_packing(uow.packages.packed(packed.package_id), packed):
            log.info("package packed before with the same content; nothing to do")
        else:
            # Raised inside the unit of work: it rolls back, inbox row and all.
            raise conflicting("PackagePacked", ALREADY_PACKED, package_id=packed.package_id)
        uow.commit()
