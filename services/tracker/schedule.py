"""When a shipment is asked about again: pure functions over its status and age.

Near delivery (an attempted delivery, a parcel at a pickup point) the next news comes
within hours, so such shipments are polled sooner and, when a carrier's daily budget
runs short, first. A shipment without news for a day has nothing happening to it: its
interval doubles with each further quiet day, up to a ceiling. Final statuses are never
polled again, and a shipment older than the carrier's ``max_tracking_age_s`` is given
up as stale (with a log line and a metric) instead of being polled for ever.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from contracts import ShipmentStatus
from services.carriers.shipment_flows import CarrierConfig

NEAR_DELIVERY = frozenset({ShipmentStatus.ATTEMPTED_DELIVERY, ShipmentStatus.READY_FOR_PICKUP})

#: ``poll_priority``: lower is claimed first.
#: A claimed shipment carries ``PRIORITY_LEASED`` until its outcome is recorded (which
#: writes its real priority back): if its tracker dies, it comes due when the lease ends
#: and is taken over before anything else, so the takeover is not queued behind the
#: regular backlog and a killed tracker's shipments wait at most one lease.
PRIORITY_LEASED = -1
PRIORITY_NEAR_DELIVERY = 0
PRIORITY_IN_TRANSIT = 1
PRIORITIES = (PRIORITY_LEASED, PRIORITY_NEAR_DELIVERY, PRIORITY_IN_TRANSIT)

#: A failing carrier's shipments wait at least this long, doubling per failed round.
FIRST_BACKOFF_S = 1.0
MAX_BACKOFF_S = 300.0
#: A write or reservation the database refused is tried again after this, doubling per failure.
DATABASE_RETRY_S = 0.25
DATABASE_RETRY_MAX_S = 4.0


def priority_of(status: ShipmentStatus) -> int:
    return PRIORITY_NEAR_DELIVERY if status in NEAR_DELIVERY else PRIORITY_IN_TRANSIT


def poll_interval_s(config: CarrierConfig, status: ShipmentStatus, quiet_for_s: float) -> float:
    """Seconds until the next poll of a tracked shipment whose last news is ``quiet_for_s`` old."""
    if status in NEAR_DELIVERY:
        return config.near_delivery_interval_s
    base = config.poll_interval_s
    if quiet_for_s <= config.quiet_after_s:
        return base
    doublings = (quiet_for_s - config.quiet_after_s) / config.quiet_after_s
    return min(config.max_interval_s, base * 2.0 ** min(doublings, 32.0))


def _doubling(failures: int, first_s: float, max_s: float) -> float:
    return min(max_s, first_s * 2.0 ** max(0, failures - 1))


def backoff_s(failures: int) -> float:
    """The wait after ``failures`` consecutive failed rounds of a carrier (1 s, 2 s, 4 s ...)."""
    return _doubling(failures, FIRST_BACKOFF_S, MAX_BACKOFF_S)


def database_retry_s(failures: int) -> float:
    """The wait after ``failures`` consecutive failed writes to the database (0.25 s doubling to 4 s):
    short, because the shipments in hand hold leases that run on meanwhile."""
    return _doubling(failures, DATABASE_RETRY_S, DATABASE_RETRY_MAX_S)


def is_too_old(config: CarrierConfig, created_at: datetime, now: datetime) -> bool:
    return now - created_at > timedelta(seconds=config.max_tracking_age_s)
