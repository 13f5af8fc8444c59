"""An event under another type's routing key is dead-lettered (CONTRACT.md §1); the services
rely on the routing key and the body, never on AMQP ``type``, ``message_id`` or ``subject``."""

from __future__ import annotations

import pytest

from contracts import ShipmentStatus, routing_key_for
from contracts.events import event_type_of_routing_key, travels_under
from services.runtime.pipeline import Pipeline
from shared import naming
from shared.delivery import Delivery
from shared.failure import PermanentError

import contract_examples as examples


def dispatcher(handlers: dict):
    """The pipeline's decode and handle, for handlers that take the event alone."""

    def alone(handler):
        return lambda event, _uow: handler(event)

    pipeline = Pipeline("test", {t: alone(h) for t, h in handlers.items()}, unit_of_work=lambda event: None)
    return lambda delivery: pipeline.handle(pipeline.decode(delivery))


SHIPPER_QUEUE = naming.work_queue("shipper")


def _shipper_like(seen: list):
    """A dispatcher taking both PackageShipped and status changes, as the shipper's does."""
    return dispatcher({"PackageShipped": seen.append, "ShipmentStatusChanged": seen.append})


def _delivery(
    event_type: str,
    routing_key: str,
    data: dict | None = None,
    headers: dict | None = None,
    amqp_type: str | None = None,
    message_id: str | None = None,
) -> Delivery:
    body = examples.to_bytes(examples.envelope(event_type, data))
    return Delivery(
        body=body,
        content_type="application/cloudevents+json",
        routing_key=routing_key,
        message_id=message_id,
        headers=headers or {},
        event_type=amqp_type,
    )


def _change(status: str, previous: str | None) -> dict:
    return examples.status_changed(2, status, previous)


@pytest.mark.parametrize(
    "event_type, data, routing_key",
    [
        ("PackageShipped", None, "shipment.status_changed.pending"),
        ("PackageShipped", None, "package.packed"),
        ("ShipmentStatusChanged", _change("registered", "pending"), "package.shipped"),
        ("ShipmentStatusChanged", _change("registered", "pending"), "shipment.status_changed.pending"),
        ("ShipmentStatusChanged", _change("registered", "pending"), "shipment.info_changed.pending"),
    ],
)
def test_an_event_under_a_routing_key_that_is_not_its_own_is_refused_naming_both(event_type, data, routing_key):
    seen = []

    with pytest.raises(PermanentError) as refused:
        _shipper_like(seen)(_delivery(event_type, routing_key, data))

    assert (
        str(refused.value) == f"a {event_type} event under routing key {routing_key!r}, which is not its own: refused"
    )
    assert seen == []


@pytest.mark.parametrize(
    "event_type, data, routing_key",
    [
        ("PackageShipped", None, "package.shipped"),
        ("ShipmentStatusChanged", _change("registered", "pending"), "shipment.status_changed.registered"),
        ("ShipmentStatusChanged", _change("registered", "registered"), "shipment.info_changed.registered"),
    ],
)
def test_an_event_under_its_own_routing_key_reaches_its_handler(event_type, data, routing_key):
    seen = []

    _shipper_like(seen)(_delivery(event_type, routing_key, data))

    assert [event.type for event in seen] == [event_type]


def test_a_copy_back_from_the_services_own_retry_path_is_judged_by_its_original_routing_key():
    seen = []
    handle = _shipper_like(seen)

    handle(_delivery("PackageShipped", SHIPPER_QUEUE, headers={naming.HEADER_ROUTING_KEY: "package.shipped"}))
    with pytest.raises(PermanentError, match="under routing key 'shipment.status_changed.pending'"):
        handle(
            _delivery(
                "PackageShipped", SHIPPER_QUEUE, headers={naming.HEADER_ROUTING_KEY: "shipment.status_changed.pending"}
            )
        )

    assert len(seen) == 1


def test_a_delivery_under_a_queue_name_says_nothing_about_its_type_and_is_handled():
    # The default exchange and the broker's own dead-lettering: only the services publish there.
    seen = []

    _shipper_like(seen)(_delivery("PackageShipped", SHIPPER_QUEUE))

    assert len(seen) == 1


def test_an_original_routing_key_header_that_is_not_text_is_not_read():
    seen = []

    with pytest.raises(PermanentError, match="under routing key 'package.packed'"):
        _shipper_like(seen)(
            _delivery("PackageShipped", "package.packed", headers={naming.HEADER_ROUTING_KEY: b"package.shipped"})
        )


@pytest.mark.parametrize(
    "amqp_type, message_id", [("PackagePacked", "not-the-event-id"), (None, None), ("x" * 300, "\u0000")]
)
def test_the_amqp_type_and_message_id_are_never_relied_on(amqp_type, message_id):
    seen = []

    _shipper_like(seen)(_delivery("PackageShipped", "package.shipped", amqp_type=amqp_type, message_id=message_id))

    [event] = seen
    assert event.type == "PackageShipped" and event.id != message_id


@pytest.mark.parametrize("status", list(ShipmentStatus))
def test_every_status_change_the_services_publish_travels_under_its_own_routing_key(status):
    change = examples.parsed("ShipmentStatusChanged", _change(status.value, None)).data

    key = routing_key_for("ShipmentStatusChanged", change)

    assert travels_under("ShipmentStatusChanged", change, key)
    assert event_type_of_routing_key(key) == "ShipmentStatusChanged"


@pytest.mark.parametrize(
    "key, event_type",
    [
        ("package.packed", "PackagePacked"),
        ("package.shipped", "PackageShipped"),
        ("shipment.status_changed.shipped", "ShipmentStatusChanged"),
        ("shipment.info_changed.registered", "ShipmentStatusChanged"),
        ("oms-shipments.shipper", None),
        ("", None),
        ("package.packed.extra", None),
        ("package", None),
    ],
)
def test_the_contracts_routing_keys_name_their_event_type(key, event_type):
    assert event_type_of_routing_key(key) == event_type
