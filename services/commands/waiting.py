"""Commands that arrive before their package's PackagePacked (CONTRACT.md §2: "applied as soon
as the package is packed, never dropped").

Before it enters the unit of work bound to its event, a command handler locks the package
row, in a transaction aside (one that records no inbox row); a package not packed yet keeps
the command there in ``waiting_commands``, keyed on its ``source`` + ``id`` (a duplicate
waits once), and the command is acked without being recorded in the inbox. The packer's
PackagePacked takes the same row lock, so a command either waits before the packing
commits or sees the package packed (for good: then it is judged in its own unit of work).

When the shipper handles the new shipment's ``pending`` change it takes the package's
waiting commands in arrival order: a cancellation that can be applied at once (``pending``,
no hand-over) is applied there, before any registration, so the carrier is never asked;
every other one is published again (through the outbox, the same ``source`` and ``id``)
and judged by its handler like any command, refusals dead-lettered with their reason.
"""

from __future__ import annotations

from sqlalchemy import bindparam, delete, select

from contracts import CloudEvent, ShipmentStatus
from contracts.commands import COMMAND_ROUTING_KEYS, PackageCancelled
from services.domain.tables import packages, waiting_commands
from services.domain.uow import UnitOfWork
from shared.db import upsert, utcnow
from shared.logging import get_logger

log = get_logger(service="shipper")

_SEEN_PACKAGE = upsert(packages, ("package_id", "first_seen_at"), ["package_id"])
_LOCK_PACKED = (
    select(packages.c.packed.is_not(None).label("packed"))
    .where(packages.c.package_id == bindparam("package_id"))
    .with_for_update()
)
_KEEP = upsert(
    waiting_commands, ("source", "event_id", "package_id", "event_type", "body", "received_at"), ["source", "event_id"]
)
_WAITING = (
    select(waiting_commands)
    .where(waiting_commands.c.package_id == bindparam("package_id"))
    .order_by(waiting_commands.c.id)
    .with_for_update()
)
_TAKE = delete(waiting_commands).where(waiting_commands.c.id == bindparam("b_id"))


def keep_if_unpacked(uow: UnitOfWork, event: CloudEvent) -> bool:
    """Before the command's own unit of work (``uow``, bound to it), in one aside: locks the
    package row (creating it: a command may name a package first) and, when the package is
    not packed yet, keeps the command to apply once it is. True: kept (committed, and not
    recorded in the inbox)."""
    package_id = event.data.package_id
    with uow.aside() as aside:
        connection = aside._connection
        connection.execute(_SEEN_PACKAGE, {"package_id": package_id, "first_seen_at": utcnow()})
        if connection.execute(_LOCK_PACKED, {"package_id": package_id}).scalar_one():
            return False  # packed: nothing to keep (rolled back, the lock let go)
        body = event.model_copy(update={"subject": event.subject or package_id}).to_bytes().decode()
        connection.execute(
            _KEEP,
            {
                "source": event.source,
                "event_id": event.id,
                "package_id": package_id,
                "event_type": event.type,
                "body": body,
                "received_at": utcnow(),
            },
        )
        aside.commit()
    log.info("package not packed yet: the command waits for its PackagePacked")
    return True


def take_waiting(uow: UnitOfWork, package_id: str, shipment, handed_over: bool) -> int:
    """Inside the unit of work holding the package and shipment locks: applies a waiting
    cancellation that can be applied now, publishes every other waiting command again.
    Returns how many commands were taken."""
    connection = uow._connection
    rows = connection.execute(_WAITING, {"package_id": package_id}).all()
    from contracts import parse_event

    for row in rows:
        event = parse_event(row.body.encode())
        connection.execute(_TAKE, {"b_id": row.id})
        if (
            isinstance(event.data, PackageCancelled)
            and shipment.status is ShipmentStatus.PENDING
            and not handed_over
            and uow.inbox.first_time(event)
        ):
            shipment.move_to(ShipmentStatus.CANCELLED, utcnow(), reason=event.data.reason)
            uow.save(shipment, next_poll_at=None, lease_owner=None, lease_until=None)
            log.info("waiting cancellation applied before registration", event_id=event.id)
            continue
        uow.outbox.add(event.id, event.type, COMMAND_ROUTING_KEYS[event.type], row.body.encode())
        log.info(
            "waiting command published again, now that the package is packed", event_id=event.id, event_type=event.type
        )
    return len(rows)


def before_registration(uow: UnitOfWork, shipment_id: str):
    """Takes a package's waiting commands before its registration; the shipment as it stands then
    (a waiting cancellation leaves it ``cancelled``: nothing is registered)."""
    with uow:
        shipment = uow.shipments.get(shipment_id)
        shipped_at = uow.packages.lock_handover(shipment.package_id)
        shipment = uow.shipments.get(shipment_id, for_update=True)
        if take_waiting(uow, shipment.package_id, shipment, shipped_at is not None):
            uow.commit()
        return shipment
