"""The shipper's batches: hand-overs applied in one transaction, each message still settled on its own."""

from __future__ import annotations

from functools import partial

from services.runtime.pipeline import Pipeline
from services.shipper.batch import ShipperBatch
from services.shipper.handlers import mark_shipped, register_with_carrier
from shared.delivery import Delivery
from shared.failure import PermanentError

import contract_examples as examples

NAME = "shipper"


def delivery(event_type: str, data: dict, routing_key: str) -> Delivery:
    return Delivery(
        body=examples.to_bytes(examples.envelope(event_type, data)),
        content_type="application/cloudevents+json",
        routing_key=routing_key,
        message_id=None,
    )


def shipped(package_id: str) -> Delivery:
    return delivery("PackageShipped", examples.shipped(package_id), "package.shipped")


def batch_for(db, carriers):
    """The shipper's batch, with deliveries decoded once on arrival as the worker hands them over."""
    pipeline = Pipeline(
        NAME,
        {"ShipmentStatusChanged": partial(register_with_carrier, carriers=carriers), "PackageShipped": mark_shipped},
        partial(db.uow, NAME),
    )
    batch = ShipperBatch(engine=db.engine, pipeline=pipeline)
    return lambda handle, deliveries: batch(handle, [pipeline.decode(d) for d in deliveries])


def test_hand_overs_of_a_batch_are_recorded_together_and_a_bad_message_fails_alone(db, carriers):
    bad = Delivery(
        body=b"[]", content_type="application/cloudevents+json", routing_key="package.shipped", message_id=None
    )
    wrong_type = delivery("PackagePacked", examples.packed("PKG-9"), "package.packed")

    outcomes = batch_for(db, carriers)(None, [shipped("PKG-2"), bad, shipped("PKG-1"), wrong_type])

    assert outcomes[0].error is None and outcomes[2].error is None
    assert isinstance(outcomes[1].error, PermanentError) and isinstance(outcomes[3].error, PermanentError)
    assert db.package("PKG-1").shipped_at is not None and db.package("PKG-2").shipped_at is not None
    assert db.inbox_count(NAME) == 2


def test_a_batch_registers_its_pending_shipments_and_ships_those_handed_over(db, carriers, services):
    services.pack("PKG-1001")
    [pending] = db.outbox_events()
    pending_delivery = Delivery(
        body=pending.to_bytes(),
        content_type="application/cloudevents+json",
        routing_key="shipment.status_changed.pending",
        message_id=None,
    )

    outcomes = batch_for(db, carriers)(None, [pending_delivery, shipped("PKG-1001")])

    assert [o.error for o in outcomes] == [None, None]
    assert db.shipment("PKG-1001").status == "shipped"
    assert db.inbox_count(NAME) == 2
