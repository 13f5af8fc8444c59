"""The tracker over the SQLite unit of work, with a fake carrier answering its queries."""

from __future__ import annotations

import dataclasses
import threading
import time
from datetime import timedelta

import pytest
from sqlalchemy import event
from sqlalchemy.exc import OperationalError
from structlog.testing import capture_logs

from services.carriers.shipment_flows import CarrierSnapshot
from services.tracker.poller import Tracker
from shared.db import utcnow
from shared.http import TransientHTTPError

from fakes import FakeCarrierClient


@pytest.fixture
def in_transit(services, db):
    """A shipment handed over to the carrier: shipped (sequence 3) and due for a poll."""
    services.pack()
    services.register()
    services.ship()
    assert (db.shipment().status, db.shipment().sequence) == ("shipped", 3)
    return db.shipment()


def test_a_forward_carrier_status_is_applied_and_its_event_stored(services, db, carrier, in_transit):
    carrier.will_answer(CarrierSnapshot("SBX123456789", "ATTEMPTED_DELIVERY", None, "customer absent"))

    assert services.tracker().poll_once() == 1

    shipment = db.shipment()
    assert carrier.queried == [in_transit.id]
    assert (shipment.status, shipment.sequence, shipment.carrier_status) == (
        "attempted_delivery",
        4,
        "ATTEMPTED_DELIVERY",
    )
    assert (shipment.polls, shipment.lease_owner) == (1, None)
    assert shipment.next_poll_at is not None
    assert db.status_history()[-1] == (4, "shipped", "attempted_delivery")
    assert db.outbox()[-1].routing_key == "shipment.status_changed.attempted_delivery"
    assert db.outbox_events()[-1].source == "/oms-shipments/tracker"


def test_the_next_poll_comes_one_poll_interval_later(services, db, carriers, carrier, in_transit):
    carriers.configs["sandbox"] = dataclasses.replace(carriers.configs["sandbox"], poll_interval_s=300)
    carrier.will_answer("SHIPPING")

    before = utcnow()
    services.tracker().poll_once()

    next_poll = db.shipment().next_poll_at
    assert before + timedelta(seconds=300) <= next_poll <= utcnow() + timedelta(seconds=300)


def test_a_stale_shipping_after_attempted_delivery_is_ignored(services, db, carrier, in_transit):
    carrier.will_answer("ATTEMPTED_DELIVERY", "SHIPPING")
    tracker = services.tracker()

    tracker.poll_once()
    tracker.poll_once()

    shipment = db.shipment()
    assert len(carrier.queried) == 2
    assert (shipment.status, shipment.sequence, shipment.carrier_status) == (
        "attempted_delivery",
        4,
        "ATTEMPTED_DELIVERY",
    )
    assert [h[2] for h in db.status_history()] == ["pending", "registered", "shipped", "attempted_delivery"]
    assert shipment.next_poll_at is not None  # still tracked


def test_a_final_status_stops_the_polling(services, db, carrier, in_transit):
    carrier.will_answer("READY_FOR_PICKUP", "DELIVERED")
    tracker = services.tracker()

    assert tracker.poll_once() == 1
    assert tracker.poll_once() == 1
    assert tracker.poll_once() == 0

    shipment = db.shipment()
    assert (shipment.status, shipment.sequence, shipment.next_poll_at) == ("delivered", 5, None)
    assert len(carrier.queried) == 2
    assert db.status_history()[-2:] == [(4, "shipped", "ready_for_pickup"), (5, "ready_for_pickup", "delivered")]


def test_an_unknown_carrier_status_changes_nothing_and_polling_goes_on(services, db, carrier, in_transit):
    carrier.will_answer("LOST_IN_SPACE")

    services.tracker().poll_once()

    shipment = db.shipment()
    assert (shipment.status, shipment.sequence) == ("shipped", 3)
    assert shipment.next_poll_at is not None and shipment.polls == 1


def test_a_failing_carrier_is_asked_again_no_sooner_than_its_retry_after(services, db, carrier, in_transit):
    carrier.will_answer(TransientHTTPError("slow down", status=429, retry_after=120))

    before = utcnow()
    services.tracker().poll_once()

    shipment = db.shipment()
    assert (shipment.status, shipment.sequence, shipment.lease_owner) == ("shipped", 3, None)
    assert shipment.next_poll_at >= before + timedelta(seconds=120)


def test_shipments_that_are_not_in_transit_are_not_polled(services, db, carrier):
    services.pack("PKG-PENDING")
    services.pack("PKG-REGISTERED")
    services.register("PKG-REGISTERED")
    carrier.will_answer("DELIVERED")

    assert services.tracker().poll_once() == 0
    assert carrier.queried == []


def test_a_claim_by_one_tracker_is_not_taken_by_another_until_its_lease_expires(services, db, carriers, in_transit):
    crashing = FakeCarrierClient().will_answer(RuntimeError("tracker process killed mid-round"))
    carriers.clients["sandbox"] = crashing
    with pytest.raises(RuntimeError):
        services.tracker(lease_s=2.0).poll_once()  # claimed, then died before recording
    lease_until = db.shipment().next_poll_at
    assert lease_until > utcnow() and db.shipment().lease_owner is not None

    survivor = FakeCarrierClient().will_answer("DELIVERED")
    carriers.clients["sandbox"] = survivor
    other = services.tracker(lease_s=2.0)
    assert other.poll_once() == 0
    assert survivor.queried == []

    time.sleep(max(0.0, (lease_until - utcnow()).total_seconds()) + 0.05)
    assert other.poll_once() == 1
    assert survivor.queried == [in_transit.id]
    assert (db.shipment().status, db.shipment().next_poll_at) == ("delivered", None)


def test_a_late_answer_is_dropped_when_another_tracker_took_the_shipment_over(services, db, carrier, in_transit):
    taker = services.tracker(lease_s=60)

    def slow_answer(shipment_id):
        # While the first tracker waits on the carrier, its lease runs out and another takes over.
        time.sleep(1.7)
        assert taker.poll_once() == 1
        return CarrierSnapshot("SBX123456789", "DELIVERED", None, None)

    carrier.will_answer(slow_answer, "ATTEMPTED_DELIVERY")
    services.tracker(lease_s=1.6).poll_once()  # long enough to ask (a request never outlives its lease)

    shipment = db.shipment()
    assert len(carrier.queried) == 2
    assert (shipment.status, shipment.sequence, shipment.polls) == ("attempted_delivery", 4, 1)


def test_a_hand_over_never_packed_is_reported_once_past_the_horizon_and_keeps_waiting(services, db):
    from prometheus_client import REGISTRY
    from structlog.testing import capture_logs

    services.ship("PKG-NEVER-PACKED")
    services.pack("PKG-1001")
    services.ship("PKG-1001")  # packed: never reported
    gauge = lambda: REGISTRY.get_sample_value("oms_handovers_waiting_for_packing")  # noqa: E731

    services.tracker(handover_horizon_s=3600).report_waiting_handovers()
    assert gauge() == 0

    tracker = services.tracker(handover_horizon_s=0.001)
    time.sleep(0.01)
    with capture_logs() as logs:
        tracker.report_waiting_handovers()
        tracker.report_waiting_handovers()  # nothing changed: no second warning
    assert gauge() == 1
    assert [(e["event"], e["count"], e["oldest_package_ids"]) for e in logs] == [
        ("hand-overs waiting for their PackagePacked past the horizon", 1, ["PKG-NEVER-PACKED"])
    ]
    assert db.package("PKG-NEVER-PACKED").shipped_at is not None  # still waiting, not dropped

    services.pack("PKG-NEVER-PACKED")
    tracker.report_waiting_handovers()
    assert gauge() == 0


def test_a_shipment_whose_lease_ran_out_is_claimed_as_taken_over_and_goes_first(db, in_transit):
    from services.tracker.queue import TrackerQueue

    with db.engine.begin() as connection:
        now = utcnow()
        [first] = TrackerQueue(connection).claim("sandbox", "dead", now, now + timedelta(seconds=0.01), 10)
    time.sleep(0.05)
    with db.engine.begin() as connection:
        now = utcnow()
        [again] = TrackerQueue(connection).claim("sandbox", "survivor", now, now + timedelta(seconds=60), 10)
    assert (first.taken_over, again.taken_over) == (False, True)
    assert again.shipment_id == in_transit.id


def _within(seconds: float, work):
    """``work()``'s result, or a failure if it has not returned in time (a tracker that hangs)."""
    outcome: list = []
    thread = threading.Thread(target=lambda: outcome.append(_outcome(work)), daemon=True)
    thread.start()
    thread.join(seconds)
    assert outcome, f"still running after {seconds} s: the tracker hangs"
    if isinstance(outcome[0], BaseException):
        raise outcome[0]
    return outcome[0]


def _outcome(work):
    try:
        return work()
    except BaseException as exc:
        return exc


LEASE_CHECK = "SELECT shipments.id, shipments.lease_owner"  # opens every write of carrier answers


class DatabaseOutage:
    """Statements containing ``text`` fail as if the server had gone, the first ``times`` times
    (``refused`` lists them), until :meth:`end`."""

    def __init__(self, engine, text: str, times: float = float("inf")):
        self.engine, self.text, self.times = engine, text, times
        self.refused: list[str] = []
        event.listen(engine, "before_cursor_execute", self._execute)

    def _execute(self, connection, cursor, statement, *rest):
        if self.text in statement and len(self.refused) < self.times:
            self.refused.append(statement)
            raise OperationalError(statement, None, ConnectionRefusedError("server closed the connection"))

    def end(self) -> None:
        event.remove(self.engine, "before_cursor_execute", self._execute)


def test_the_database_away_while_carrier_slots_are_reserved_delays_the_poll_and_loses_nothing(
    services, db, carrier, in_transit
):
    carrier.will_answer("DELIVERED")
    outage = DatabaseOutage(db.engine, "carrier_pacing", times=3)

    with capture_logs() as logs:
        assert _within(20, services.tracker().poll_once) == 1

    assert len(outage.refused) == 3
    assert [e["retry_in_s"] for e in logs if e["event"] == "carrier slots not reserved"] == [0.25, 0.5, 1.0]
    assert carrier.queried == [in_transit.id]
    assert db.shipment().status == "delivered"


def test_answers_the_database_refused_are_written_again_without_asking_the_carrier_twice(
    services, db, carrier, in_transit
):
    carrier.will_answer("DELIVERED")
    outage = DatabaseOutage(db.engine, LEASE_CHECK, times=2)

    with capture_logs() as logs:
        assert _within(20, services.tracker().poll_once) == 1

    assert len(outage.refused) == 2
    assert [
        (e["kept_for_retry"], e["retry_in_s"]) for e in logs if e["event"] == "tracker could not record answers"
    ] == [(1, 0.25), (1, 0.5)]
    assert carrier.queried == [in_transit.id]
    assert (db.shipment().status, db.shipment().lease_owner) == ("delivered", None)


def test_answers_whose_lease_runs_out_while_the_database_is_away_are_given_up_and_polled_again(
    services, db, carrier, in_transit
):
    carrier.will_answer("SHIPPING", "DELIVERED")
    outage = DatabaseOutage(db.engine, LEASE_CHECK)

    with capture_logs() as logs:
        _within(20, services.tracker(lease_s=1.6).poll_once)
    assert [e["kept_for_retry"] for e in logs if e["event"] == "tracker could not record answers"][-1] == 0
    assert db.shipment().lease_owner is not None  # nothing written: the lease runs out by itself

    assert outage.refused
    outage.end()
    time.sleep(1.7)
    assert services.tracker().poll_once() == 1
    assert carrier.queried == [in_transit.id, in_transit.id]
    assert db.shipment().status == "delivered"


def test_a_carrier_lane_that_crashes_stops_the_tracker_with_its_error_instead_of_leaving_it_idle(
    services, db, in_transit
):
    class BrokenPacing(Tracker):
        async def reserve(self, config, wanted):
            raise RuntimeError("a defect in the pacing code")

    stop = threading.Event()
    tracker = BrokenPacing(
        uow=lambda: db.uow("tracker"), engine=db.engine, carriers=services.carriers, stop=stop, idle_s=0.01
    )
    try:
        with pytest.raises(RuntimeError, match="a defect in the pacing code"):
            _within(20, tracker.run)
    finally:
        stop.set()
