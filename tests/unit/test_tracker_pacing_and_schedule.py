"""The tracker's shared pacing, adaptive intervals, stale mark and carrier history, over SQLite."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

from sqlalchemy import select, update

from contracts import ShipmentStatus
from services.carriers.shipment_flows import CarrierConfig, CarrierEvent
from services.domain.tables import carrier_events, carrier_pacing, shipments
from services.tools.timeline import timeline_rows
from services.tracker import metrics
from services.tracker.pacing import HEADROOM, CarrierPacing
from services.tracker.schedule import poll_interval_s
from shared.db import utcnow
from shared.http import TransientHTTPError

from fakes import FakeCarrierClient

CONFIG = CarrierConfig(
    code="sandbox", url="http://sandbox.invalid", username="u", password="p", poll_interval_s=60, max_requests_per_s=10
)


def reserve(db, config, wanted, horizon_s=1.0):
    with db.engine.begin() as connection:
        return CarrierPacing(connection).reserve(config, wanted, horizon_s)


def test_two_replicas_reserving_at_once_get_evenly_spaced_slots_and_never_the_same_one(db):
    first = reserve(db, CONFIG, 5)
    second = reserve(db, CONFIG, 5)

    spacing = 1 / (10 * HEADROOM)
    assert len(first.offsets_s) == 5 and len(second.offsets_s) == 5
    gaps = [b - a for a, b in zip(first.offsets_s, first.offsets_s[1:])]
    assert all(abs(gap - spacing) < 1e-6 for gap in gaps)
    # The second replica's first slot comes after the first replica's last one (same clock, a moment later).
    assert second.offsets_s[0] >= first.offsets_s[-1] + spacing - 0.05


def test_no_more_slots_are_handed_out_than_fit_the_horizon(db):
    granted = reserve(db, CONFIG, 100, horizon_s=1.0)

    assert len(granted.offsets_s) == int(1.0 * 10 * HEADROOM) + 1
    assert reserve(db, CONFIG, 100, horizon_s=0.0).offsets_s == []


def test_a_daily_budget_spreads_the_days_requests_over_the_day_and_counts_them(db):
    config = dataclasses.replace(CONFIG, max_requests_per_day=250)

    first = reserve(db, config, 10)
    again = reserve(db, config, 10)

    assert len(first.offsets_s) == 1 and first.budget_left == 249
    assert again.offsets_s == []  # the next slot is 86400/250 s later
    with db.engine.connect() as connection:
        assert connection.execute(select(carrier_pacing.c.day_count)).scalar_one() == 1


def test_a_pause_pushes_every_replicas_next_slot_past_it(db):
    with db.engine.begin() as connection:
        CarrierPacing(connection).pause("sandbox", 30)

    paused = reserve(db, CONFIG, 5)

    assert paused.offsets_s == [] and 29 < paused.paused_for_s <= 30


def test_intervals_are_shorter_near_delivery_and_grow_after_a_quiet_day():
    assert poll_interval_s(CONFIG, ShipmentStatus.READY_FOR_PICKUP, 0) == 15
    assert poll_interval_s(CONFIG, ShipmentStatus.SHIPPED, 3600) == 60
    assert poll_interval_s(CONFIG, ShipmentStatus.SHIPPED, 2 * 86400) == 120
    assert poll_interval_s(CONFIG, ShipmentStatus.SHIPPED, 30 * 86400) == 60 * 16


def test_a_shipment_past_its_maximum_age_is_marked_stale_and_no_longer_polled(services, db, carriers, carrier):
    services.pack(), services.register(), services.ship()
    carriers.configs["sandbox"] = dataclasses.replace(carriers.configs["sandbox"], max_tracking_age_s=3600)
    with db.engine.begin() as connection:
        connection.execute(update(shipments).values(created_at=utcnow() - timedelta(hours=2)))
    carrier.will_answer("SHIPPING")
    before = metrics.STALE.labels("sandbox")._value.get()

    assert services.tracker().poll_once() == 1

    shipment = db.shipment()
    assert (shipment.status, shipment.next_poll_at) == ("shipped", None)
    assert shipment.stale_at is not None
    assert metrics.STALE.labels("sandbox")._value.get() == before + 1
    assert services.tracker().poll_once() == 0


class CarrierWithHistory(FakeCarrierClient):
    def __init__(self):
        super().__init__()
        self.history_asked: list[str] = []

    def history(self, shipment_id):
        self.history_asked.append(shipment_id)
        return [
            CarrierEvent("SHIPPING", utcnow() - timedelta(hours=1), "In transit", "Hub"),
            CarrierEvent("READY_FOR_PICKUP", utcnow(), "At the pickup point", "Kadikoy"),
        ]


def test_a_change_brings_the_carriers_history_and_the_timeline_shows_it(services, db, carriers):
    carrier = CarrierWithHistory().will_answer("SHIPPING", "READY_FOR_PICKUP")
    carriers.clients["sandbox"] = carrier
    services.pack(), services.register(), services.ship()
    tracker = services.tracker()

    tracker.poll_once()  # SHIPPING: nothing new, no history asked
    tracker.poll_once()  # READY_FOR_PICKUP: a change, and its history

    shipment = db.shipment()
    assert shipment.status == "ready_for_pickup" and shipment.poll_priority == 0
    assert carrier.history_asked == [shipment.id] and shipment.history_wanted is False
    assert db.count(carrier_events) == 2
    with db.engine.connect() as connection:
        _, rows = timeline_rows(connection, "PKG-1001")
    kinds = [(kind, what) for _, kind, what, _ in rows]
    assert ("carrier", "READY_FOR_PICKUP") in kinds and ("status", "ready_for_pickup") in kinds


def test_a_retry_after_pauses_the_carrier_for_every_replica(services, db, carrier):
    services.pack(), services.register(), services.ship()
    carrier.will_answer(TransientHTTPError("slow down", status=429, retry_after=120))

    services.tracker().poll_once()

    with db.engine.connect() as connection:
        paused_until = connection.execute(select(carrier_pacing.c.paused_until)).scalar_one()
    assert paused_until is not None and paused_until.replace(tzinfo=None) >= (
        utcnow() + timedelta(seconds=110)
    ).replace(tzinfo=None)


def test_a_dead_trackers_expired_lease_is_taken_over_before_the_regular_backlog(services, db):
    """A claim marks the row as leased; when the lease runs out unrecorded, it is claimed first."""
    from services.tracker.queue import TrackerQueue
    from services.tracker.schedule import PRIORITY_LEASED

    services.pack(), services.register(), services.ship()
    with db.engine.begin() as connection:
        queue = TrackerQueue(connection)
        now = queue.now()
        # The dead tracker's claim: its lease already over.
        assert [c.shipment_id for c in queue.claim("sandbox", "dead:1:a", now, now - timedelta(seconds=1), 10)]
    shipment = db.shipment()
    assert (shipment.poll_priority, shipment.lease_owner) == (PRIORITY_LEASED, "dead:1:a")

    with db.engine.begin() as connection:
        queue = TrackerQueue(connection)
        claims = queue.claim("sandbox", "alive:2:b", queue.now(), queue.now() + timedelta(seconds=60), 1)
    assert [c.token for c in claims] == ["alive:2:b"]
    assert services.tracker().poll_once() == 0  # still leased by the live tracker
