"""ShipmentStatusChanged → Omnitron, never an older status after a newer one.

The shipment's relay cursor stays locked while Omnitron is called, so two publishers
handling two changes of one shipment relay them one after the other, newest last. A call
that got no answer may still land at Omnitron later, after a newer one: the shipment is
then marked unsettled, and settle.py sends the newest status again once it has settled.
"""
from __future__ import annotations

from datetime import timedelta

from contracts import CloudEvent, ShipmentStatusChanged
from services.domain.uow import UnitOfWork
from services.omnitron_publisher.omnitron import OmnitronClient, plan_calls
from shared.db import utcnow
from shared.errors import DependencyDown
from shared.faults import crash_point
from shared.http import TransientHTTPError
from shared.logging import get_logger

log = get_logger(service="omnitron-publisher")


def relay_to_omnitron(event: CloudEvent, uow: UnitOfWork, omnitron: OmnitronClient, settle_s: float = 60.0) -> None:
    change: ShipmentStatusChanged = event.data
    with uow:
        if not uow.inbox.first_time(event.id):
            log.info("duplicate event ignored")
            return
        last_sequence = uow.omnitron_relays.lock_last_sequence(change.shipment_id)
        if change.sequence <= last_sequence:
            log.info("older than the last relayed change; not sent", sequence=change.sequence,
                     last_relayed_sequence=last_sequence)
            uow.omnitron_relays.record_skipped(change, event.id)
            uow.commit()
            return
        calls = plan_calls(change)
        unsettled = False
        try:
            for call in calls:
                unsettled = omnitron.send(call).unsettled or unsettled
                crash_point("after_omnitron_call")
        except TransientHTTPError as exc:
            failure = exc
        else:
            failure = None
            uow.omnitron_relays.record_sent(change, [call.to_json() for call in calls], event.id)
            if unsettled:
                uow.omnitron_relays.mark_unsettled(change.shipment_id, change.sequence, _settled_by(settle_s))
            uow.commit()
    if failure is not None:
        if unsettled or failure.ambiguous:
            _mark_unsettled(uow, change, settle_s)
        # Omnitron being down is never a reason to give up on a status.
        raise DependencyDown(f"Omnitron unavailable: {failure}", retry_after_s=failure.retry_after) from failure
    log.info("relayed to Omnitron", status=change.status.value, sequence=change.sequence, calls=len(calls),
             unsettled=unsettled)


def _settled_by(settle_s: float):
    return utcnow() + timedelta(seconds=settle_s)


def _mark_unsettled(uow: UnitOfWork, change: ShipmentStatusChanged, settle_s: float) -> None:
    """The change's transaction rolled back (it is retried); the mark commits on its own."""
    with uow:
        uow.omnitron_relays.lock_last_sequence(change.shipment_id)
        uow.omnitron_relays.mark_unsettled(change.shipment_id, change.sequence, _settled_by(settle_s))
        uow.commit()
    log.warning("Omnitron call unanswered; it may still land", sequence=change.sequence, settle_s=settle_s)
