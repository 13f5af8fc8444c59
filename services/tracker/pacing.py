"""A carrier's rate limit, shared by every tracker replica: GCRA slots in one database row.

Each carrier has one ``carrier_pacing`` row holding its *theoretical arrival time*
(``tat``): the earliest moment the next request may go out. A tracker that wants to
send ``n`` requests locks the row and reserves evenly spaced send slots from
``max(tat, now, paused_until)`` on, ``1 / rate`` apart, as many as fall within a short
horizon; it moves ``tat`` past the last one and sleeps until each slot. Slots are never
handed out twice and never closer than ``1 / rate``, whichever replica takes them, so
*any* one-second window holds at most ``rate + 1`` requests, unlike fixed per-second
counters, which allow twice the rate across a window boundary. An idle carrier builds
up no burst credit: the next slot is never earlier than now.

``now`` is the database's clock, read after the row lock is granted, so replicas on
machines with skewed clocks still space their slots correctly; each replica turns a
slot into its own monotonic clock as "so many seconds after the reservation returned",
which can only make it later, never earlier.

``paused_until`` is how one replica's bad news reaches the others: a ``Retry-After``
or a failure backoff pushes it forward and every later reservation starts after it.
No pause is ever longer than ``max_pause_s`` (``OMS_MAX_RETRY_AFTER_S``): not when it is
written, and not when it is read, so a row written by a replica with a longer bound (or
an older version) still pauses no longer than this one allows.
``max_requests_per_day`` lowers the rate to the day's budget spread evenly over the day
(``CarrierConfig.paced_rate_per_s``), and a per-day counter caps the day exactly, so a
burst of priority work can never spend tomorrow's budget today.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from sqlalchemy import Connection

from services.carriers.shipment_flows import CarrierConfig
from services.domain.tables import carrier_pacing
from shared.db import database_now, upsert
from shared.http import DEFAULT_MAX_RETRY_AFTER_S

_LONG_AGO = datetime(2000, 1, 1, tzinfo=timezone.utc)
# Creates the carrier's row or, with a no-op update, locks the existing one.
_LOCK_PACING = upsert(
    carrier_pacing,
    ("carrier", "tat", "day_count"),
    ["carrier"],
    update={"carrier": "excluded.carrier"},
    returning=[c.name for c in carrier_pacing.c],
)
#: Slots are spaced for 95% of the limit: what the carrier measures also includes network
#: and scheduling jitter on both sides, which can bunch evenly sent requests a little.
HEADROOM = 0.95


@dataclass(frozen=True)
class Reservation:
    offsets_s: list[float]  # each slot, in seconds after ``now`` (never negative)
    paused_for_s: float  # how long the carrier is paused from now (0: not paused)
    budget_left: int | None  # requests left today after these (None: no daily budget)
    seconds_to_next_day: float


class CarrierPacing:
    def __init__(self, connection: Connection, max_pause_s: float = DEFAULT_MAX_RETRY_AFTER_S):
        self._c = connection
        self._max_pause = timedelta(seconds=max_pause_s)

    def _paused_until(self, row, now: datetime) -> datetime:
        return min(row.paused_until, now + self._max_pause) if row.paused_until else now

    def _lock(self, carrier: str):
        return self._c.execute(_LOCK_PACING, {"carrier": carrier, "tat": _LONG_AGO, "day_count": 0}).one()

    def reserve(self, config: CarrierConfig, wanted: int, horizon_s: float) -> Reservation:
        row = self._lock(config.code)
        now = database_now(self._c)
        rate = config.paced_rate_per_s * HEADROOM
        paused_until = self._paused_until(row, now)
        start = max(row.tat, now, paused_until)
        paused_for = max(0.0, (paused_until - now).total_seconds())
        room = (now + timedelta(seconds=horizon_s) - start).total_seconds()
        granted = min(wanted, math.floor(room * rate) + 1) if room >= 0 else 0
        today = now.date()
        used_today = row.day_count if row.day == today else 0
        budget_left = None
        if config.max_requests_per_day is not None:
            granted = max(0, min(granted, int(config.max_requests_per_day) - used_today))
            budget_left = int(config.max_requests_per_day) - used_today - granted
        if granted:
            self._c.execute(
                carrier_pacing.update()
                .where(carrier_pacing.c.carrier == config.code)
                .values(tat=start + timedelta(seconds=granted / rate), day=today, day_count=used_today + granted)
            )
        lead = (start - now).total_seconds()
        tomorrow = datetime.combine(today + timedelta(days=1), datetime.min.time(), tzinfo=timezone.utc)
        return Reservation(
            [lead + i / rate for i in range(granted)], paused_for, budget_left, (tomorrow - now).total_seconds()
        )

    def pause(self, carrier: str, seconds: float) -> None:
        """No replica sends to this carrier for ``seconds`` (Retry-After, or backoff after failures)."""
        row = self._lock(carrier)
        now = database_now(self._c)
        until = now + min(timedelta(seconds=max(0.0, seconds)), self._max_pause)
        self._c.execute(
            carrier_pacing.update()
            .where(carrier_pacing.c.carrier == carrier)
            .values(paused_until=max(until, self._paused_until(row, now)))
        )
