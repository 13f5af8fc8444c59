"""Events that contradict what the services recorded: dead-lettered with the reason, and counted.

A second PackagePacked with other content for a packed package, or a ShipmentStatusChanged
naming a shipment or a sequence the services never recorded, is not a broken message (it
parses) but a conflict with the database: an operator wants to see how often it happens.
"""

from __future__ import annotations

from prometheus_client import Counter

from shared.failure import PermanentError
from shared.logging import get_logger

log = get_logger(component="refusals")

CONFLICTS = Counter(
    "oms_conflicting_events_total",
    "Events dead-lettered because they contradict what the services recorded, by event type.",
    ["event_type"],
)


def conflicting(event_type: str, reason: str, **context) -> PermanentError:
    """The error to raise for such an event (the failure policy dead-letters it), counted once here.

    ``event_type`` is one of the contract's types, never a value taken from a message.
    """
    CONFLICTS.labels(event_type).inc()
    log.warning("conflicting event refused", event_type=event_type, reason=reason, **context)
    return PermanentError(reason)


def never_recorded(named, shipment_known: bool) -> PermanentError:
    """For a ShipmentStatusChanged naming a shipment, or a sequence, the services never recorded."""
    if shipment_known:
        reason = f"shipment {named.shipment_id!r} has no recorded change with sequence {named.sequence}"
    else:
        reason = f"shipment {named.shipment_id!r} was never recorded"
    return conflicting(
        "ShipmentStatusChanged",
        f"a status change the services never recorded: {reason}",
        shipment_id=named.shipment_id,
        sequence=named.sequence,
    )
