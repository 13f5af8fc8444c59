"""ShipmentStatusChanged → Omnitron, never an older status after a newer one.

What is sent is the change as the services recorded it (shipment id and sequence are all
a message is trusted for); a message naming a change never recorded is dead-lettered.

The shipment's relay cursor stays locked while Omnitron is called, so two publishers
handling two changes of one shipment relay them one after the other, newest last. A call
that got no answer may still land at Omnitron later, after a newer one: the shipment is
then marked unsettled, and settle.py sends the newest status again once it has settled.

An order item held by several packages follows the package packed last: a change is sent
only for the items whose latest package it belongs to, under row locks on every holder
of those items, so the packages' changes reach Omnitron one after the other.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta

from contracts import CloudEvent, ShipmentStatusChanged
from services.domain.refusals import never_recorded
from services.domain.repository import FollowedItems
from services.domain.uow import UnitOfWork
from services.omnitron_publisher.omnitron import OmnitronClient, plan_calls
from shared.db import utcnow
from shared.failure import DependencyDown
from shared.faults import crash_point
from shared.http import TransientHTTPError
from shared.logging import get_logger

log = get_logger(service="omnitron-publisher")


def relay_to_omnitron(
    event: CloudEvent,
    uow: UnitOfWork,
    omnitron: OmnitronClient,
    settle_s: float = 60.0,
    companies: Mapping[str, str] | None = None,
) -> None:
    named: ShipmentStatusChanged = event.data
    with uow:
        change, last_sequence = uow.omnitron_relays.lock_for_change(named.shipment_id, named.sequence)
        if change is None:
            # Raised inside the unit of work: it rolls back, inbox row, cursor and all.
            raise never_recorded(named, uow.shipments.get(named.shipment_id) is not None)
        if change.sequence <= last_sequence:
            log.info(
                "older than the last relayed change; not sent",
                sequence=change.sequence,
                last_relayed_sequence=last_sequence,
            )
            uow.omnitron_relays.record_skipped(change, event.id)
            uow.commit()
            return
        items = uow.omnitron_relays.lock_followed_items(change.shipment_id)
        calls = plan_calls(
            change.model_copy(update={"order_item_ids": items.followed(change.order_item_ids)}), companies
        )
        unsettled = False
        try:
            for call in calls:
                unsettled = omnitron.send(call).unsettled or unsettled
                crash_point("after_omnitron_call")
        except TransientHTTPError as exc:
            failure = exc
        else:
            failure = None
            uow.omnitron_relays.record_sent(change, [call.to_json() for call in calls], event.id, items.superseded)
            settled_by = _unsettled_until(unsettled, bool(calls), items, settle_s)
            if settled_by is not None:
                uow.omnitron_relays.mark_unsettled(change.shipment_id, change.sequence, settled_by)
            uow.commit()
    if failure is not None:
        if unsettled or failure.ambiguous:
            _mark_unsettled(uow.aside(), change, settle_s)
        # Omnitron being down is never a reason to give up on a status.
        raise DependencyDown(f"Omnitron unavailable: {failure}", retry_after_s=failure.retry_after) from failure
    if items.superseded:
        log.info(
            "order items followed by a package packed later; not sent for them",
            order_item_ids=sorted(items.superseded),
            sequence=change.sequence,
        )
    log.info(
        "relayed to Omnitron",
        status=change.status.value,
        sequence=change.sequence,
        calls=len(calls),
        unsettled=unsettled,
    )


def _settled_by(settle_s: float):
    return utcnow() + timedelta(seconds=settle_s)


def _unsettled_until(unanswered_before: bool, sent: bool, items: FollowedItems, settle_s: float):
    """Until when the change just sent may be undone by a call still in flight; None: by none.

    Its own unanswered attempt may land after it; so may an earlier package's unanswered
    call on an item this package has taken over. Either way the change is sent again once
    that call has settled (settle.py).
    """
    candidates = [_settled_by(settle_s)] if unanswered_before else []
    if sent and items.earlier_unsettled_until and items.earlier_unsettled_until > utcnow():
        candidates.append(items.earlier_unsettled_until)
    return max(candidates, default=None)


def _mark_unsettled(uow: UnitOfWork, change: ShipmentStatusChanged, settle_s: float) -> None:
    """The change's transaction rolled back (it is retried); the mark commits on its own."""
    with uow:
        uow.omnitron_relays.lock_last_sequence(change.shipment_id)
        uow.omnitron_relays.mark_unsettled(change.shipment_id, change.sequence, _settled_by(settle_s))
        uow.commit()
    log.warning("Omnitron call unanswered; it may still land", sequence=change.sequence, settle_s=settle_s)
