"""ShipmentStatusChanged → Omnitron, never an older status after a newer one.

The shipment's relay cursor stays locked while Omnitron is called, so two publishers
handling two changes of one shipment relay them one after the other, newest last.
"""
from __future__ import annotations

from contracts import CloudEvent, ShipmentStatusChanged
from services.domain.uow import UnitOfWork
from services.omnitron_publisher.omnitron import OmnitronClient, plan_calls
from shared.errors import DependencyDown
from shared.faults import crash_point
from shared.http import TransientHTTPError
from shared.logging import get_logger

log = get_logger(service="omnitron-publisher")


def relay_to_omnitron(event: CloudEvent, uow: UnitOfWork, omnitron: OmnitronClient) -> None:
    change: ShipmentStatusChanged = event.data
    with uow:
        if not uow.inbox.first_time(event.id):
            log.info("duplicate event ignored")
            return
        last_sequence = uow.omnitron_relays.lock_last_sequence(change.shipment_id)
        if change.sequence <= last_sequence:
            log.info("older than the last relayed change; not sent", sequence=change.sequence,
                     last_relayed_sequence=last_sequence)
            uow.omnitron_relays.record(change, "skipped_stale", 0, event.id)
            uow.commit()
            return
        calls = plan_calls(change)
        try:
            for call in calls:
                omnitron.send(call)
                crash_point("after_omnitron_call")
        except TransientHTTPError as exc:
            # Omnitron being down is never a reason to give up on a status.
            raise DependencyDown(f"Omnitron unavailable: {exc}", retry_after_s=exc.retry_after) from exc
        uow.omnitron_relays.record(change, "sent", len(calls), event.id)
        uow.commit()
        log.info("relayed to Omnitron", status=change.status.value, sequence=change.sequence, calls=len(calls))
