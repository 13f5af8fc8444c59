"""PackagePacked → the package, its items and a shipment in ``pending``."""
from __future__ import annotations

from collections.abc import Container

from contracts import CloudEvent, PackagePacked
from services.domain.model import Shipment
from services.domain.uow import UnitOfWork
from shared.db import utcnow
from shared.errors import PermanentError
from shared.logging import get_logger

log = get_logger(service="packer")


def open_shipment(event: CloudEvent, uow: UnitOfWork, carriers: Container[str]) -> None:
    packed: PackagePacked = event.data
    if packed.carrier not in carriers:
        raise PermanentError(f"unknown carrier {packed.carrier!r}: not in the carriers file")
    with uow:
        if not uow.inbox.first_time(event.id):
            log.info("duplicate event ignored")
            return
        if uow.packages.record_packed(packed, event.id):
            uow.add(Shipment.open_for(packed, utcnow()))
        else:
            log.warning("package was packed before under another event id; kept the first")
        uow.commit()
