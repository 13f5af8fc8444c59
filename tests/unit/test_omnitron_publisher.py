"""The Omnitron publisher over the SQLite unit of work, with a fake Omnitron recording its calls."""

from __future__ import annotations

import json
import threading
import time

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import select

from services.domain.tables import omnitron_cursor, omnitron_relays, status_changes
from services.omnitron_publisher.handlers import relay_to_omnitron
from services.omnitron_publisher.omnitron import OmnitronCall, plan_calls
from services.omnitron_publisher.settle import UnsettledCalls
from shared.failure import DependencyDown, PermanentError
from shared.http import PermanentHTTPError, TransientHTTPError

import contract_examples as examples
from fakes import FakeOmnitron

NAME = "omnitron-publisher"


def change(sequence: int, status: str, previous: str | None, event_id: str | None = None, **data):
    return examples.parsed(
        "ShipmentStatusChanged", examples.status_changed(sequence, status, previous, **data), event_id
    )


@pytest.fixture
def omnitron() -> FakeOmnitron:
    return FakeOmnitron()


@pytest.fixture
def relay(db, omnitron):
    """Relays a change the services recorded (it is recorded first, as the services would have)."""

    def relay(event, settle_s: float = 60) -> None:
        db.record_change(event.data, event.id)
        db.apply(NAME, relay_to_omnitron, event, omnitron=omnitron, settle_s=settle_s)

    return relay


def unsettled(db, shipment_id: str = "shp-1") -> tuple[int | None, bool]:
    """The shipment's unsettled sequence, and whether it has a settle time."""
    rows = db.all(
        select(omnitron_cursor.c.unsettled_sequence, omnitron_cursor.c.unsettled_until).where(
            omnitron_cursor.c.shipment_id == shipment_id
        )
    )
    return (rows[0][0], rows[0][1] is not None) if rows else (None, False)


def settle(db, omnitron) -> int:
    return UnsettledCalls(engine=db.engine, omnitron=omnitron, stop=threading.Event(), settle_s=60).settle_due()


def test_a_status_with_an_omnitron_code_is_relayed_as_one_bulk_call_for_the_package(db, omnitron, relay):
    shipped = change(3, "shipped", "registered", order_item_ids=(555, 556))

    relay(shipped)

    assert (
        omnitron.calls
        == plan_calls(shipped.data)
        == [
            OmnitronCall(
                "PATCH",
                "/api/i1/order_items/bulk_status_update/",
                {
                    "orderitem_set": [
                        {"id": 555, "status": "500", "tracking_number": "SBX123456789", "shipping_company": "sandbox"},
                        {"id": 556, "status": "500", "tracking_number": "SBX123456789", "shipping_company": "sandbox"},
                    ]
                },
                (555, 556),
            )
        ]
    )
    assert db.relays() == [(3, "shipped", "sent", 1)]
    assert db.omnitron_cursor("shp-1") == 3


def test_a_status_without_an_omnitron_code_is_relayed_per_item_as_an_extra_field(db, omnitron, relay):
    failed = change(
        5,
        "delivery_failed",
        "attempted_delivery",
        order_item_ids=(555, 556),
        changed_at="2026-11-28T09:00:00+03:00",
        carrier_status="DELIVERY_FAILED",
    )

    relay(failed)

    assert [(c.method, c.path) for c in omnitron.calls] == [
        ("PATCH", "/api/v1/order_items/555/"),
        ("PATCH", "/api/v1/order_items/556/"),
    ]
    assert omnitron.calls[0].body == {
        "extra_field": {
            "shipment": {
                "status": "delivery_failed",
                "tracking_number": "SBX123456789",
                "tracking_url": "https://track.example/SBX123456789",
                "carrier": "sandbox",
                "changed_at": "2026-11-28T06:00:00Z",
                "sequence": 5,
            }
        }
    }
    assert omnitron.calls == plan_calls(failed.data)
    assert db.relays() == [(5, "delivery_failed", "sent", 2)]


def test_a_change_older_than_the_last_relayed_one_is_not_sent(db, omnitron, relay):
    relay(change(4, "attempted_delivery", "shipped"))

    relay(change(3, "shipped", "registered"))

    assert [call.body["orderitem_set"][0]["status"] for call in omnitron.calls] == ["540"]
    assert db.relays() == [(4, "attempted_delivery", "sent", 1), (3, "shipped", "skipped_stale", 0)]
    assert db.omnitron_cursor("shp-1") == 4


def test_changes_of_different_shipments_do_not_hold_each_other_back(db, omnitron, relay):
    relay(change(4, "attempted_delivery", "shipped", shipment_id="shp-A", package_id="PKG-A", order_item_ids=(1,)))
    relay(change(3, "shipped", "registered", shipment_id="shp-B", package_id="PKG-B", order_item_ids=(2,)))

    assert len(omnitron.calls) == 2
    assert (db.omnitron_cursor("shp-A"), db.omnitron_cursor("shp-B")) == (4, 3)


def test_a_duplicate_event_id_is_not_sent_twice(db, omnitron, relay):
    shipped = change(3, "shipped", "registered")

    relay(shipped)
    relay(change(3, "shipped", "registered", event_id=shipped.id))

    assert len(omnitron.calls) == 1
    assert db.relays() == [(3, "shipped", "sent", 1)]
    assert db.inbox_count(NAME) == 1


def test_omnitron_being_down_becomes_dependency_down_and_nothing_is_recorded(db, omnitron, relay):
    omnitron.fail_with = TransientHTTPError("bad gateway", status=502, retry_after=30)
    shipped = change(3, "shipped", "registered")

    with pytest.raises(DependencyDown) as raised:
        relay(shipped)

    assert raised.value.retry_after_s == 30
    assert raised.value.exhausts is False
    assert "Omnitron unavailable: HTTP 502: bad gateway" in str(raised.value)
    assert db.relays() == []
    assert db.omnitron_cursor("shp-1") is None
    assert db.inbox_count(NAME) == 0

    omnitron.fail_with = None
    relay(shipped)  # the retry, once Omnitron is back
    assert len(omnitron.calls) == 1
    assert db.relays() == [(3, "shipped", "sent", 1)]


def test_omnitron_refusing_a_call_propagates_and_records_nothing(db, omnitron, relay):
    omnitron.fail_with = PermanentHTTPError("order item 555 not found", 404)

    with pytest.raises(PermanentHTTPError):
        relay(change(3, "shipped", "registered"))

    assert db.relays() == []
    assert db.inbox_count(NAME) == 0


def test_a_change_answered_only_after_an_unanswered_attempt_is_sent_again_once_settled_newest_last(db, omnitron, relay):
    omnitron.unanswered_first = True  # the lost attempt of "shipped" may still land at Omnitron
    relay(change(3, "shipped", "registered"), settle_s=0)
    omnitron.unanswered_first = False
    relay(change(6, "delivered", "shipped"))
    assert unsettled(db) == (3, True)
    sent_before = len(omnitron.calls)

    assert settle(db, omnitron) == 1

    assert omnitron.calls[sent_before:] == plan_calls(change(6, "delivered", "shipped").data)  # the newest again
    assert db.relays()[-1] == (6, "delivered", "resent", 1)
    assert unsettled(db) == (None, False)
    assert settle(db, omnitron) == 0  # settled: nothing more


def test_an_unanswered_failure_marks_the_shipment_and_the_change_is_still_retried(db, omnitron, relay):
    omnitron.fail_with = TransientHTTPError("timed out (ReadTimeout)", ambiguous=True)
    shipped = change(3, "shipped", "registered")

    with pytest.raises(DependencyDown):
        relay(shipped, settle_s=0)

    assert unsettled(db) == (3, True)
    assert (db.relays(), db.inbox_count(NAME)) == ([], 0)  # not relayed: the retry will relay it
    assert settle(db, omnitron) == 0  # nothing newer relayed: sending an older status could undo it
    assert omnitron.calls == [] and unsettled(db) == (3, True)

    omnitron.fail_with = None
    relay(shipped)
    assert db.relays() == [(3, "shipped", "sent", 1)]


def test_a_failure_that_proves_the_call_never_arrived_marks_nothing(db, omnitron, relay):
    omnitron.fail_with = TransientHTTPError("connection failed (ConnectError: refused)", ambiguous=False)

    with pytest.raises(DependencyDown):
        relay(change(3, "shipped", "registered"), settle_s=0)

    assert unsettled(db) == (None, False)


# ---- only changes the services recorded ----------------------------------------------------


def conflicts() -> float:
    return REGISTRY.get_sample_value("oms_conflicting_events_total", {"event_type": "ShipmentStatusChanged"}) or 0.0


def test_a_change_naming_a_shipment_never_recorded_is_dead_lettered_counted_and_not_sent(db, omnitron):
    counted_before = conflicts()

    with pytest.raises(PermanentError, match="shipment 'shp-forged' was never recorded"):
        db.apply(
            NAME, relay_to_omnitron, change(6, "delivered", "shipped", shipment_id="shp-forged"), omnitron=omnitron
        )

    assert omnitron.calls == []
    assert (db.relays(), db.inbox_count(NAME)) == ([], 0)
    assert conflicts() == counted_before + 1


def test_a_change_naming_a_sequence_never_recorded_is_dead_lettered_and_not_sent(db, omnitron, relay):
    relay(change(3, "shipped", "registered"))

    with pytest.raises(PermanentError, match="shipment 'shp-1' has no recorded change with sequence 6"):
        db.apply(NAME, relay_to_omnitron, change(6, "delivered", "shipped"), omnitron=omnitron)

    assert [call.body["orderitem_set"][0]["status"] for call in omnitron.calls] == ["500"]
    assert db.omnitron_cursor("shp-1") == 3
    assert db.inbox_count(NAME) == 1


def test_what_is_sent_is_the_recorded_change_whatever_the_message_naming_it_says(db, omnitron):
    recorded = change(3, "shipped", "registered")
    db.record_change(recorded.data, recorded.id)
    forged = change(3, "delivered", "shipped", tracking_number="FORGED", carrier="other", order_item_ids=(999,))

    db.apply(NAME, relay_to_omnitron, forged, omnitron=omnitron)

    assert omnitron.calls == plan_calls(recorded.data)


# ---- an order item in several packages follows the package packed last ------------------------


def packed_change(sequence: int, status: str, previous: str | None, package: str, items: tuple[int, ...]):
    return change(sequence, status, previous, shipment_id=f"shp-{package}", package_id=package, order_item_ids=items)


def sent_items(omnitron, since: int = 0) -> dict[int, str]:
    """Per order item, the status code of the last bulk call that carried it."""
    shown: dict[int, str] = {}
    for call in omnitron.calls[since:]:
        for entry in call.body.get("orderitem_set", []):
            shown[entry["id"]] = entry["status"]
    return shown


@pytest.fixture
def repacked(db):
    """PKG-OLD (items 555, 556) packed at 10:00; PKG-NEW re-packs item 555 at 11:00."""
    db.record_change(
        packed_change(1, "pending", None, "PKG-OLD", (555, 556)).data, "e-old-1", packed_at="2026-11-27T10:00:00Z"
    )
    db.record_change(
        packed_change(1, "pending", None, "PKG-NEW", (555,)).data, "e-new-1", packed_at="2026-11-27T11:00:00Z"
    )


def test_an_earlier_packages_change_is_sent_only_for_the_items_it_still_holds(db, omnitron, relay, repacked):
    relay(packed_change(3, "shipped", "registered", "PKG-OLD", (555, 556)))

    assert sent_items(omnitron) == {556: "500"}
    assert omnitron.calls[0].order_item_ids == (556,)
    [row] = db.all(select(omnitron_relays.c.outcome, omnitron_relays.c.superseded_items))
    assert (row.outcome, json.loads(row.superseded_items)) == ("sent", [555])


def test_an_earlier_packages_newer_status_never_overwrites_the_later_packages_status(db, omnitron, relay, repacked):
    relay(packed_change(3, "shipped", "registered", "PKG-NEW", (555,)))
    relay(packed_change(6, "delivered", "shipped", "PKG-OLD", (555, 556)))

    assert sent_items(omnitron) == {555: "500", 556: "550"}


def test_a_change_of_an_earlier_package_holding_only_re_packed_items_sends_nothing(db, omnitron, relay):
    db.record_change(
        packed_change(1, "pending", None, "PKG-OLD", (555,)).data, "e-old-1", packed_at="2026-11-27T10:00:00Z"
    )
    db.record_change(
        packed_change(1, "pending", None, "PKG-NEW", (555,)).data, "e-new-1", packed_at="2026-11-27T11:00:00Z"
    )

    relay(packed_change(3, "shipped", "registered", "PKG-OLD", (555,)))

    assert omnitron.calls == []
    assert db.relays() == [(3, "shipped", "sent", 0)]
    assert db.omnitron_cursor("shp-PKG-OLD") == 3


def test_the_package_packed_last_is_judged_by_its_packing_time_not_by_arrival(db, omnitron, relay):
    # The re-pack arrived first, but the package it replaces was packed later.
    db.record_change(packed_change(1, "pending", None, "PKG-B", (555,)).data, "e-b", packed_at="2026-11-27T09:00:00Z")
    db.record_change(packed_change(1, "pending", None, "PKG-A", (555,)).data, "e-a", packed_at="2026-11-27T10:00:00Z")

    relay(packed_change(3, "shipped", "registered", "PKG-B", (555,)))
    relay(packed_change(3, "shipped", "registered", "PKG-A", (555,)))

    assert [call.path for call in omnitron.calls] == ["/api/i1/order_items/bulk_status_update/"]
    assert db.relays() == [(3, "shipped", "sent", 0), (3, "shipped", "sent", 1)]


def test_packages_packed_at_the_same_moment_follow_the_greater_package_id(db, omnitron, relay):
    for package in ("PKG-2", "PKG-1"):
        db.record_change(packed_change(1, "pending", None, package, (555,)).data, f"e-{package}")

    relay(packed_change(3, "shipped", "registered", "PKG-1", (555,)))
    relay(packed_change(3, "shipped", "registered", "PKG-2", (555,)))

    assert db.relays() == [(3, "shipped", "sent", 0), (3, "shipped", "sent", 1)]


def test_the_newest_status_sent_again_leaves_out_items_a_later_package_took_over(db, omnitron, relay):
    db.record_change(
        packed_change(1, "pending", None, "PKG-OLD", (555, 556)).data, "e-old-1", packed_at="2026-11-27T10:00:00Z"
    )
    omnitron.unanswered_first = True
    relay(packed_change(3, "shipped", "registered", "PKG-OLD", (555, 556)), settle_s=0)
    omnitron.unanswered_first = False
    db.record_change(
        packed_change(1, "pending", None, "PKG-NEW", (555,)).data, "e-new-1", packed_at="2026-11-27T11:00:00Z"
    )
    sent_before = len(omnitron.calls)

    assert settle(db, omnitron) == 1

    assert [call.order_item_ids for call in omnitron.calls[sent_before:]] == [(556,)]
    assert sent_items(omnitron, sent_before) == {556: "500"}


def test_a_later_package_is_sent_again_after_an_earlier_packages_unanswered_call_on_its_item(db, omnitron, relay):
    db.record_change(
        packed_change(1, "pending", None, "PKG-OLD", (555,)).data, "e-old-1", packed_at="2026-11-27T10:00:00Z"
    )
    omnitron.unanswered_first = True  # the old package's "shipped" may still land on item 555
    relay(packed_change(3, "shipped", "registered", "PKG-OLD", (555,)), settle_s=1)
    omnitron.unanswered_first = False
    db.record_change(
        packed_change(1, "pending", None, "PKG-NEW", (555,)).data, "e-new-1", packed_at="2026-11-27T11:00:00Z"
    )
    relay(packed_change(6, "delivered", "shipped", "PKG-NEW", (555,)))
    assert unsettled(db, "shp-PKG-NEW") == (6, True)
    sent_before = len(omnitron.calls)

    deadline = time.monotonic() + 30
    while unsettled(db, "shp-PKG-NEW") != (None, False) and time.monotonic() < deadline:
        settle(db, omnitron)
        time.sleep(0.2)

    assert sent_items(omnitron, sent_before) == {555: "550"}  # the later package's, after the late call
    assert unsettled(db, "shp-PKG-NEW") == (None, False)


def test_a_change_recorded_before_its_data_was_kept_is_rebuilt_from_its_rows(db, omnitron):
    shipped = change(3, "shipped", "registered", order_item_ids=(555,))
    db.record_change(shipped.data, shipped.id)
    with db.engine.begin() as connection:  # as migration 0005 leaves a change recorded before it
        connection.execute(status_changes.update().values(data=None))

    db.apply(NAME, relay_to_omnitron, shipped, omnitron=omnitron)

    assert omnitron.calls == plan_calls(shipped.data)


def test_the_bulk_call_names_the_carriers_omnitron_shipping_company_code_where_the_carriers_file_gives_one():
    shipped = change(3, "shipped", "registered").data

    [named] = plan_calls(shipped, {shipped.carrier: "sandbox-cargo"})
    [own] = plan_calls(shipped, {"another-carrier": "other-cargo"})

    assert {entry["shipping_company"] for entry in named.body["orderitem_set"]} == {"sandbox-cargo"}
    assert {entry["shipping_company"] for entry in own.body["orderitem_set"]} == {shipped.carrier}
