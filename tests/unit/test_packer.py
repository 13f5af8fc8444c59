"""The packer over the SQLite unit of work: PackagePacked → a pending shipment and its event."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from contracts import parse_event
from services.domain.tables import package_items, packages, shipments, status_changes
from shared.failure import PermanentError
from shared.inbox import inbox_table
from shared.outbox import outbox_table

import contract_examples as examples


def test_a_packed_package_opens_one_pending_shipment_and_stores_one_outbox_event(services, db):
    services.pack(item_ids=(555, 556))

    shipment = db.shipment()
    assert (shipment.status, shipment.sequence, shipment.order_number, shipment.carrier) == (
        "pending",
        1,
        "ORD-1001",
        "sandbox",
    )
    assert shipment.next_poll_at is None
    [row] = db.outbox()
    assert (row.event_type, row.routing_key) == ("ShipmentStatusChanged", "shipment.status_changed.pending")
    [event] = db.outbox_events()
    assert event.id == row.event_id
    assert event.source == "/oms-shipments/packer"
    assert event.subject == "PKG-1001"
    assert event.data.model_dump(mode="json", exclude={"changed_at"}) == {
        "shipment_id": shipment.id,
        "package_id": "PKG-1001",
        "order_number": "ORD-1001",
        "carrier": "sandbox",
        "tracking_number": None,
        "tracking_url": None,
        "previous_status": None,
        "status": "pending",
        "carrier_status": None,
        "sequence": 1,
        "order_item_ids": [555, 556],
        "label_url": None,
        "shipping_company": None,
        "reason": None,
    }
    [history] = db.status_changes()
    assert (history.sequence, history.status, history.event_id) == (1, "pending", event.id)
    assert db.count(package_items) == 2


def test_the_outbox_relay_is_woken_after_the_commit(services, db):
    services.pack()

    assert db.relay_wakeups.calls == 1


def test_a_duplicate_event_id_is_applied_once(services, db):
    first = services.pack()
    services.pack(event_id=first.id)

    assert db.count(shipments) == 1
    assert db.count(outbox_table) == 1
    assert db.count(status_changes) == 1
    assert db.count(inbox_table) == 1
    assert db.relay_wakeups.calls == 1


def test_an_unknown_carrier_is_a_permanent_error_and_stores_nothing(services, db):
    with pytest.raises(PermanentError, match="unknown carrier 'ghost-cargo'"):
        services.pack(carrier="ghost-cargo")

    assert db.count(packages) == 0
    assert db.count(inbox_table) == 0
    assert db.count(outbox_table) == 0


def test_the_same_package_packed_with_other_content_is_dead_lettered_and_the_first_stays(services, db):
    first = services.pack(order_number="ORD-1001", item_ids=(555,))
    with pytest.raises(PermanentError, match="already packed with other content"):
        services.pack(order_number="ORD-9999", item_ids=(777, 778))

    assert db.count(shipments) == 1
    assert db.shipment().order_number == "ORD-1001"
    package = db.package()
    assert (package.order_number, package.packed_event_id) == ("ORD-1001", first.id)
    assert db.all(package_items.select().with_only_columns(package_items.c.order_item_id)) == [(555,)]
    assert db.count(outbox_table) == 1
    assert db.inbox_count("packer") == 1  # the refused event is not recorded as applied


def test_a_refused_repack_replayed_is_judged_again_not_taken_for_a_duplicate(services, db):
    services.pack(order_number="ORD-1001")
    conflicting = services.pack_event(order_number="ORD-9999")
    for _ in range(2):
        with pytest.raises(PermanentError, match="already packed with other content"):
            services.apply_packed(conflicting)

    assert db.inbox_count("packer") == 1


def test_the_same_package_packed_with_equal_data_under_another_id_is_acknowledged_without_effect(services, db):
    services.pack(
        item_ids=(555, 556), packed_at="2026-11-27T10:00:00Z", payment={"amount": "120.50", "currency": "TRY"}
    )
    # The same data as the contract types it: another offset for the same instant, the
    # amount as a number, the items in another order, an unknown field.
    again = examples.packed(
        item_ids=(556, 555),
        packed_at="2026-11-27T13:00:00+03:00",
        payment={"amount": 120.5, "currency": "TRY"},
        gift_wrap=True,
    )
    services.apply_packed(examples.parsed("PackagePacked", again))

    assert db.count(shipments) == 1
    assert db.count(outbox_table) == 1
    assert db.inbox_count("packer") == 2


def test_the_same_event_id_from_another_source_is_another_event(services, db):
    first = services.pack("PKG-1")
    services.apply_packed(
        parse_event(
            examples.to_bytes(
                examples.envelope("PackagePacked", examples.packed("PKG-2"), event_id=first.id, source="/oms/erp")
            )
        )
    )

    assert {db.shipment("PKG-1").package_id, db.shipment("PKG-2").package_id} == {"PKG-1", "PKG-2"}
    assert db.inbox_count("packer") == 2


def test_two_packages_open_two_shipments(services, db):
    services.pack("PKG-1")
    services.pack("PKG-2")

    assert db.shipment("PKG-1").id != db.shipment("PKG-2").id
    assert [h for h in db.status_history("PKG-2")] == [(1, None, "pending")]


def test_a_packing_time_with_an_offset_is_stored_in_utc(services, db):
    services.pack(packed_at="2026-11-27T13:00:00+03:00")

    assert db.package().packed_at == datetime(2026, 11, 27, 10, 0, tzinfo=timezone.utc)
