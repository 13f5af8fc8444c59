"""The Omnitron publisher over the SQLite unit of work, with a fake Omnitron recording its calls."""
from __future__ import annotations

import pytest

from services.omnitron_publisher.handlers import relay_to_omnitron
from services.omnitron_publisher.omnitron import OmnitronCall, plan_calls
from shared.errors import DependencyDown
from shared.http import PermanentHTTPError, TransientHTTPError

import contract_examples as examples
from fakes import FakeOmnitron

NAME = "omnitron-publisher"


def change(sequence: int, status: str, previous: str | None, event_id: str | None = None, **data):
    return examples.parsed("ShipmentStatusChanged", examples.status_changed(sequence, status, previous, **data),
                           event_id)


@pytest.fixture
def omnitron() -> FakeOmnitron:
    return FakeOmnitron()


@pytest.fixture
def relay(db, omnitron):
    def relay(event) -> None:
        relay_to_omnitron(event, db.uow(NAME), omnitron)

    return relay


def test_a_status_with_an_omnitron_code_is_relayed_as_one_bulk_call_for_the_package(db, omnitron, relay):
    shipped = change(3, "shipped", "registered", order_item_ids=(555, 556))

    relay(shipped)

    assert omnitron.calls == plan_calls(shipped.data) == [OmnitronCall(
        "PATCH", "/api/i1/order_items/bulk_status_update/",
        {"orderitem_set": [
            {"id": 555, "status": "500", "tracking_number": "SBX123456789", "shipping_company": "sandbox"},
            {"id": 556, "status": "500", "tracking_number": "SBX123456789", "shipping_company": "sandbox"},
        ]},
        (555, 556),
    )]
    assert db.relays() == [(3, "shipped", "sent", 1)]
    assert db.omnitron_cursor("shp-1") == 3


def test_a_status_without_an_omnitron_code_is_relayed_per_item_as_an_extra_field(db, omnitron, relay):
    failed = change(5, "delivery_failed", "attempted_delivery", order_item_ids=(555, 556),
                    changed_at="2026-11-28T09:00:00+03:00", carrier_status="DELIVERY_FAILED")

    relay(failed)

    assert [(c.method, c.path) for c in omnitron.calls] == [
        ("PATCH", "/api/v1/order_items/555/"), ("PATCH", "/api/v1/order_items/556/")]
    assert omnitron.calls[0].body == {"extra_field": {"shipment": {
        "status": "delivery_failed", "tracking_number": "SBX123456789",
        "tracking_url": "https://track.example/SBX123456789", "carrier": "sandbox",
        "changed_at": "2026-11-28T06:00:00Z", "sequence": 5}}}
    assert omnitron.calls == plan_calls(failed.data)
    assert db.relays() == [(5, "delivery_failed", "sent", 2)]


def test_a_change_older_than_the_last_relayed_one_is_not_sent(db, omnitron, relay):
    relay(change(4, "attempted_delivery", "shipped"))

    relay(change(3, "shipped", "registered"))

    assert [call.body["orderitem_set"][0]["status"] for call in omnitron.calls] == ["540"]
    assert db.relays() == [(4, "attempted_delivery", "sent", 1), (3, "shipped", "skipped_stale", 0)]
    assert db.omnitron_cursor("shp-1") == 4


def test_changes_of_different_shipments_do_not_hold_each_other_back(db, omnitron, relay):
    relay(change(4, "attempted_delivery", "shipped", shipment_id="shp-A"))
    relay(change(3, "shipped", "registered", shipment_id="shp-B"))

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
