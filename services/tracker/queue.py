"""Due shipments, claimed with leases, so no two trackers poll one shipment at once.

A claim stamps a token and pushes ``next_poll_at`` one lease ahead: if the tracker dies,
the shipment simply comes due again when the lease runs out, and another tracker takes
it over. On PostgreSQL the claim skips rows another tracker is claiming (FOR UPDATE SKIP
LOCKED), so replicas never wait on each other; SQLite has one writer at a time anyway.

The due query filters on ``carrier`` and ``poll_priority`` by equality and on
``next_poll_at`` by range, in index order, so it is an index range scan over the due
rows only (``ix_shipments_due_by_carrier``), whatever the number of tracked shipments.
Times are the database's clock, the one clock every replica shares.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Iterable

from sqlalchemy import Connection, bindparam, func, select, text, update

from contracts import ShipmentStatus
from services.carriers.shipment_flows import CarrierEvent
from services.domain.tables import carrier_events, shipments
from services.tracker.schedule import PRIORITIES, PRIORITY_LEASED
from shared.db import database_now, upsert


@dataclass(frozen=True)
class Claim:
    """A shipment a tracker holds, as it was when claimed."""

    shipment_id: str
    carrier: str
    token: str
    status: ShipmentStatus
    carrier_status: str | None
    news_at: datetime  # its last status change (``updated_at``): how long it has been quiet
    created_at: datetime
    history_wanted: bool
    taken_over: bool = False  # its previous tracker's lease ran out: it is overdue already


@dataclass(frozen=True)
class PollResult:
    """What one poll leaves on its shipment's row; the lease ends with it."""

    shipment_id: str
    next_poll_at: datetime | None
    polled: bool = True
    poll_priority: int = 1
    history_wanted: bool = False
    stale_at: datetime | None = None


_CLAIMED = (
    shipments.c.id,
    shipments.c.carrier,
    shipments.c.status,
    shipments.c.carrier_status,
    shipments.c.updated_at,
    shipments.c.created_at,
    shipments.c.history_wanted,
)

_KEEP_CARRIER_EVENTS = upsert(
    carrier_events,
    ("shipment_id", "event_key", "carrier_status", "occurred_at", "description", "location", "recorded_at"),
    ["shipment_id", "event_key"],
)

# One statement for a whole batch of outcomes (PostgreSQL): far fewer round trips than
# an UPDATE per row, which matters at thousands of polls per second.
_FINISH_MANY_PG = text("""
    UPDATE shipments AS s
       SET lease_owner = NULL, lease_until = NULL, next_poll_at = v.next_poll_at,
           polls = s.polls + v.polled, last_polled_at = CASE WHEN v.polled = 1 THEN :now ELSE s.last_polled_at END,
           poll_priority = v.poll_priority, history_wanted = v.history_wanted,
           stale_at = COALESCE(v.stale_at, s.stale_at)
      FROM unnest(CAST(:ids AS varchar[]), CAST(:next_polls AS timestamptz[]), CAST(:polled AS int[]),
                  CAST(:priorities AS smallint[]), CAST(:wanted AS boolean[]), CAST(:stale AS timestamptz[]))
           AS v(id, next_poll_at, polled, poll_priority, history_wanted, stale_at)
     WHERE s.id = v.id
""")


class TrackerQueue:
    def __init__(self, connection: Connection):
        self._c = connection
        self._postgres = connection.dialect.name == "postgresql"

    def now(self) -> datetime:
        """The database's clock, in this queue's transaction."""
        return database_now(self._c)

    def claim(self, carrier: str, token: str, now: datetime, lease_until: datetime, limit: int) -> list[Claim]:
        """Up to ``limit`` due shipments of one carrier, most overdue first: first those whose
        tracker's lease ran out (it died or stalled), then near-delivery ones, then the rest."""
        claims: list[Claim] = []
        for priority in PRIORITIES:
            if len(claims) >= limit:
                break
            due = (
                select(shipments.c.id)
                .where(
                    shipments.c.carrier == carrier,
                    shipments.c.poll_priority == priority,
                    shipments.c.next_poll_at.is_not(None),
                    shipments.c.next_poll_at <= now,
                )
                .order_by(shipments.c.next_poll_at)
                .limit(limit - len(claims))
                .with_for_update(skip_locked=True)
            )
            # = ANY(ARRAY(...)) on PostgreSQL: the planner then fetches the claimed rows by
            # primary key; with IN (...) it may hash-join against a scan of the whole table.
            chosen = (
                shipments.c.id == func.any(func.array(due.scalar_subquery()))
                if self._postgres
                else shipments.c.id.in_(due.scalar_subquery())
            )
            rows = self._c.execute(
                update(shipments)
                .where(chosen)
                .values(
                    lease_owner=token, lease_until=lease_until, next_poll_at=lease_until, poll_priority=PRIORITY_LEASED
                )
                .returning(*_CLAIMED)
            ).all()
            claims += [
                Claim(
                    r.id,
                    r.carrier,
                    token,
                    ShipmentStatus(r.status),
                    r.carrier_status,
                    r.updated_at,
                    r.created_at,
                    bool(r.history_wanted),
                    priority == PRIORITY_LEASED,
                )
                for r in rows
            ]
        return claims

    def lock_held(self, tokens: dict[str, str]) -> set[str]:
        """Locks the rows (in id order: no deadlock between replicas); the ids whose claim still stands."""
        if not tokens:
            return set()
        rows = self._c.execute(
            select(shipments.c.id, shipments.c.lease_owner)
            .where(shipments.c.id.in_(list(tokens)))
            .order_by(shipments.c.id)
            .with_for_update()
        ).all()
        return {row.id for row in rows if row.lease_owner == tokens[row.id]}

    def finish(self, outcomes: list[PollResult], now: datetime) -> None:
        """Ends the leases (call :meth:`lock_held` first, in the same transaction)."""
        if not outcomes:
            return
        if self._postgres:
            self._c.execute(
                _FINISH_MANY_PG,
                {
                    "now": now,
                    "ids": [o.shipment_id for o in outcomes],
                    "next_polls": [o.next_poll_at for o in outcomes],
                    "polled": [int(o.polled) for o in outcomes],
                    "priorities": [o.poll_priority for o in outcomes],
                    "wanted": [o.history_wanted for o in outcomes],
                    "stale": [o.stale_at for o in outcomes],
                },
            )
            return
        statement = (
            update(shipments)
            .where(shipments.c.id == bindparam("b_id"))
            .values(
                lease_owner=None,
                lease_until=None,
                next_poll_at=bindparam("b_next"),
                polls=shipments.c.polls + bindparam("b_polled"),
                last_polled_at=func.coalesce(
                    bindparam("b_polled_at", type_=shipments.c.last_polled_at.type), shipments.c.last_polled_at
                ),
                poll_priority=bindparam("b_priority"),
                history_wanted=bindparam("b_wanted"),
                stale_at=func.coalesce(bindparam("b_stale", type_=shipments.c.stale_at.type), shipments.c.stale_at),
            )
        )
        self._c.execute(
            statement,
            [
                {
                    "b_id": o.shipment_id,
                    "b_next": o.next_poll_at,
                    "b_polled": int(o.polled),
                    "b_polled_at": now if o.polled else None,
                    "b_priority": o.poll_priority,
                    "b_wanted": o.history_wanted,
                    "b_stale": o.stale_at,
                }
                for o in outcomes
            ],
        )

    def record_carrier_events(self, shipment_id: str, events: Iterable[CarrierEvent], now: datetime) -> int:
        """Keeps the carrier's events; one seen before (same status, date, text, place) is not added again."""
        rows = [
            {
                "shipment_id": shipment_id,
                "event_key": _event_key(e),
                "carrier_status": e.carrier_status,
                "occurred_at": e.date,
                "description": e.description,
                "location": e.location,
                "recorded_at": now,
            }
            for e in events
        ]
        if not rows:
            return 0
        return self._c.execute(_KEEP_CARRIER_EVENTS, rows).rowcount

    def due_backlog(self, now: datetime) -> dict[str, int]:
        rows = self._c.execute(
            select(shipments.c.carrier, func.count())
            .where(shipments.c.next_poll_at.is_not(None), shipments.c.next_poll_at <= now)
            .group_by(shipments.c.carrier)
        ).all()
        return {carrier: count for carrier, count in rows}


def _event_key(event: CarrierEvent) -> str:
    date = event.date.isoformat() if event.date else ""
    raw = "\x1f".join((event.carrier_status, date, event.description or "", event.location or ""))
    return hashlib.sha256(raw.encode()).hexdigest()[:40]
