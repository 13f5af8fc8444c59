"""No carrier pause outlasts ``OMS_MAX_RETRY_AFTER_S``: not when written, not when read (SQLite)."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select, update

from services.carriers.shipment_flows import CarrierConfig
from services.domain.tables import carrier_pacing
from services.tracker.pacing import CarrierPacing
from shared.db import utcnow
from shared.http import TransientHTTPError

CONFIG = CarrierConfig(
    code="sandbox", url="http://sandbox.invalid", username="u", password="p", poll_interval_s=60, max_requests_per_s=10
)


def paused_for_s(db) -> float:
    with db.engine.connect() as connection:
        until = connection.execute(select(carrier_pacing.c.paused_until)).scalar_one()
    return (until.replace(tzinfo=None) - utcnow().replace(tzinfo=None)).total_seconds()


def test_a_pause_longer_than_the_bound_is_written_as_the_bound(db):
    with db.engine.begin() as connection:
        CarrierPacing(connection, max_pause_s=30).pause("sandbox", 86_400)
    assert 25 < paused_for_s(db) <= 30


def test_a_pause_stored_longer_than_the_bound_holds_the_carrier_back_no_longer_than_the_bound(db):
    with db.engine.begin() as connection:
        CarrierPacing(connection).reserve(CONFIG, 1, 1.0)  # the carrier's row
        connection.execute(update(carrier_pacing).values(paused_until=utcnow() + timedelta(days=30)))
    with db.engine.begin() as connection:
        reservation = CarrierPacing(connection, max_pause_s=30).reserve(CONFIG, 1, 1.0)
    assert reservation.paused_for_s <= 30


def test_a_trackers_retry_after_pause_never_exceeds_its_bound(services, db, carrier):
    services.pack(), services.register(), services.ship()
    carrier.will_answer(TransientHTTPError("slow down", status=429, retry_after=86_400))

    services.tracker(max_pause_s=20).poll_once()

    assert 15 < paused_for_s(db) <= 20
