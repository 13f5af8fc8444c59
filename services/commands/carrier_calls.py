"""Deleting a registration at a carrier: ``DELETE {base}/shipments/{shipmentId}``."""

from __future__ import annotations

import time

from services.carriers.directory import CarrierDirectory
from shared.http import PermanentHTTPError, TransientHTTPError
from shared.logging import get_logger

log = get_logger(service="shipper")


def delete_at_carrier(carriers: CarrierDirectory, carrier: str, shipment_id: str) -> None:
    """Deletes the shipment at the carrier; a ``404`` counts as already deleted. A ``4xx``
    refusal raises ``PermanentHTTPError``, a transient failure ``TransientHTTPError``."""
    if not carriers.integrated(carrier):
        return
    try:
        carriers.client(carrier).delete(shipment_id)
    except PermanentHTTPError as exc:
        if exc.status != 404:
            raise
        log.info("carrier had no such shipment: counted as deleted", carrier=carrier, shipment_id=shipment_id)


def delete_best_effort(
    carriers: CarrierDirectory, carrier: str, shipment_id: str, attempts: int, sleep=time.sleep
) -> bool:
    """Deletes an old registration, retried up to ``attempts`` times (each with the client's own
    quick retries), then logged: the change that made it old has committed already."""
    for attempt in range(1, max(1, attempts) + 1):
        try:
            delete_at_carrier(carriers, carrier, shipment_id)
            log.info("old registration deleted at the carrier", carrier=carrier, shipment_id=shipment_id)
            return True
        except TransientHTTPError as exc:
            if attempt >= attempts:
                log.error(
                    "old registration not deleted at the carrier: delete it by hand",
                    carrier=carrier,
                    shipment_id=shipment_id,
                    error=str(exc),
                    attempts=attempt,
                )
                return False
            sleep(min(5.0, 0.25 * 2 ** (attempt - 1)))
        except PermanentHTTPError as exc:
            log.error(
                "the carrier refused to delete the old registration: delete it by hand",
                carrier=carrier,
                shipment_id=shipment_id,
                status=exc.status,
                error=exc.message,
            )
            return False
    return False
