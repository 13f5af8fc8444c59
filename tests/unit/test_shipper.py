"""The shipper over the SQLite unit of work: carrier registration and the hand-over, in any order."""

from __future__ import annotations

import pytest
from structlog.testing import capture_logs

from contracts import parse_event
from services.shipper.handlers import register_with_carrier
from shared.db import utcnow
from shared.failure import PermanentError
from shared.http import PermanentHTTPError

import contract_examples as examples


def test_registration_moves_a_pending_shipment_to_registered_with_the_carriers_tracking_data(services, db, carrier):
    services.pack()

    services.register()

    shipment = db.shipment()
    assert carrier.registered == [(shipment.id, "PKG-1001")]
    assert (shipment.status, shipment.sequence, shipment.carrier_status) == ("registered", 2, "CREATED")
    assert (shipment.tracking_number, shipment.tracking_url, shipment.label_url) == (
        "SBX123456789",
        "https://track.example/SBX123456789",
        "https://labels.example/SBX123456789.pdf",
    )
    assert shipment.next_poll_at is None
    assert db.status_history() == [(1, None, "pending"), (2, "pending", "registered")]
    registered = db.outbox_events()[-1]
    assert db.outbox()[-1].routing_key == "shipment.status_changed.registered"
    assert (registered.data.tracking_number, registered.data.tracking_url, registered.data.carrier_status) == (
        "SBX123456789",
        "https://track.example/SBX123456789",
        "CREATED",
    )
    assert registered.source == "/oms-shipments/shipper"


def test_a_redelivered_registration_request_does_not_call_the_carrier_again(services, db, carrier):
    services.pack()
    services.register()

    with capture_logs() as logs:
        services.register()

    assert len(carrier.registered) == 1
    assert db.shipment().sequence == 2
    assert [entry["event"] for entry in logs] == ["duplicate event ignored"]


def test_a_carrier_refusing_the_registration_leaves_the_shipment_pending_for_a_replay(services, db, carrier):
    services.pack()
    carrier.register_error = PermanentHTTPError("E_ZIP: zipcode is invalid", 422)

    with pytest.raises(PermanentHTTPError, match="HTTP 422: E_ZIP: zipcode is invalid"):
        services.register()
    assert db.shipment().status == "pending"
    assert db.inbox_count("shipper") == 0

    carrier.register_error = None
    services.register()  # the dead letter replayed once the data is fixed
    assert db.shipment().status == "registered"


def test_a_registration_request_for_a_shipment_never_recorded_is_dead_lettered(db, carriers, carrier):
    data = examples.status_changed(1, "pending", None, shipment_id="never-recorded")
    forged = parse_event(examples.to_bytes(examples.envelope("ShipmentStatusChanged", data)))

    with pytest.raises(PermanentError, match="shipment 'never-recorded' was never recorded"):
        db.apply("shipper", register_with_carrier, forged, carriers=carriers)

    assert carrier.registered == []
    assert db.inbox_count("shipper") == 0


def test_a_registration_request_naming_a_sequence_never_recorded_is_dead_lettered(services, db, carrier):
    services.pack()
    genuine = services.pending_event()
    forged = parse_event(
        examples.to_bytes(
            examples.envelope("ShipmentStatusChanged", {**genuine.data.model_dump(mode="json"), "sequence": 7})
        )
    )

    with pytest.raises(PermanentError, match="has no recorded change with sequence 7"):
        db.apply("shipper", register_with_carrier, forged, carriers=services.carriers)

    assert carrier.registered == [] and db.shipment().status == "pending"


def test_registration_uses_the_recorded_shipment_not_the_package_a_message_names(services, db, carrier):
    services.pack("PKG-1")
    services.pack("PKG-2", order_number="ORD-2")
    genuine = services.pending_event("PKG-1")
    misleading = parse_event(
        examples.to_bytes(
            examples.envelope(
                "ShipmentStatusChanged",
                {**genuine.data.model_dump(mode="json"), "package_id": "PKG-2", "order_number": "ORD-2"},
            )
        )
    )

    db.apply("shipper", register_with_carrier, misleading, carriers=services.carriers)

    assert carrier.registered == [(db.shipment("PKG-1").id, "PKG-1")]
    assert (db.shipment("PKG-1").status, db.shipment("PKG-2").status) == ("registered", "pending")


def test_package_shipped_before_registration_is_remembered_and_applied_when_registration_commits(services, db):
    services.pack()
    services.ship()

    assert (db.shipment().status, db.shipment().sequence) == ("pending", 1)
    assert db.package().shipped_at is not None

    before = utcnow()
    services.register()

    shipment = db.shipment()
    assert (shipment.status, shipment.sequence) == ("shipped", 3)
    assert db.status_history() == [(1, None, "pending"), (2, "pending", "registered"), (3, "registered", "shipped")]
    assert shipment.next_poll_at is not None and shipment.next_poll_at >= before
    assert db.outbox_events()[-1].data.tracking_number == "SBX123456789"


def test_package_shipped_before_package_packed_is_applied_after_packing_and_registration(services, db):
    shipped = services.ship()
    assert db.shipment() is None
    assert db.package().shipped_event_id == shipped.id

    services.pack()
    assert (db.shipment().status, db.shipment().sequence) == ("pending", 1)
    services.register()

    assert db.status_history() == [(1, None, "pending"), (2, "pending", "registered"), (3, "registered", "shipped")]
    assert db.package().order_number == "ORD-1001"


def test_package_shipped_after_registration_moves_to_shipped_and_schedules_a_poll(services, db):
    services.pack()
    services.register()
    assert db.shipment().next_poll_at is None

    before = utcnow()
    services.ship()

    shipment = db.shipment()
    assert (shipment.status, shipment.sequence) == ("shipped", 3)
    assert before <= shipment.next_poll_at <= utcnow()
    assert db.status_history()[-1] == (3, "registered", "shipped")
    assert db.outbox()[-1].routing_key == "shipment.status_changed.shipped"


def test_a_duplicate_package_shipped_is_applied_once(services, db):
    services.pack()
    services.register()
    shipped = services.ship()

    services.ship(event_id=shipped.id)
    services.ship()  # the same hand-over under another id changes nothing either

    assert db.shipment().sequence == 3
    assert [h[2] for h in db.status_history()] == ["pending", "registered", "shipped"]
    assert db.package().shipped_event_id == shipped.id
