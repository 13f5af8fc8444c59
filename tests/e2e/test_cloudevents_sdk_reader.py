"""The official CloudEvents SDK (2.x) reads everything the services publish (CONTRACT.md §1, §2):
every status's change under its routing key, through its RabbitMQ binding, its JSON format
reader (``from_json``) and its HTTP binding (as a webhook relaying our messages would), with
the attributes the contract says; and the dead-letter copies of CloudEvents, in both modes.

Each fate below (the carrier's answers after the hand-over) drives one package through a path of statuses, so every routing key the
services publish under comes by (``shipment.info_changed.*`` is bound too: whatever comes
under it is read the same way).
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime

import pika
from cloudevents.core.bindings import http, rabbitmq
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent

from contracts import ShipmentStatusChanged
from contracts.statuses import ShipmentStatus

from events import package_packed, package_shipped
from harness import wait_until

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
FATES = {  # order number -> the carrier's answers, poll after poll
    "ORD-READ-1": ["SHIPPING", "ATTEMPTED_DELIVERY", "READY_FOR_PICKUP", "DELIVERED"],
    "ORD-READ-2": ["SHIPPING", "DELIVERY_FAILED"],
    "ORD-READ-3": ["DELETED"],
}
PATHS = {
    "ORD-READ-1": ["pending", "registered", "shipped", "attempted_delivery", "ready_for_pickup", "delivered"],
    "ORD-READ-2": ["pending", "registered", "shipped", "delivery_failed"],
    "ORD-READ-3": ["pending", "registered", "shipped", "cancelled"],
}


def _watch(amqp_url: str) -> tuple[pika.BlockingConnection, str]:
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    channel = connection.channel()
    queue = channel.queue_declare("", exclusive=True).method.queue
    for key in ("shipment.status_changed.*", "shipment.info_changed.*"):
        channel.queue_bind(queue, "oms.events", routing_key=key)
    return connection, queue


def _take_all(connection: pika.BlockingConnection, queue: str) -> list[tuple]:
    channel = connection.channel()
    taken = []
    while True:
        method, properties, body = channel.basic_get(queue, auto_ack=True)
        if method is None:
            return taken
        taken.append((method, properties, body))


def _read_three_ways(properties, body: bytes):
    """The SDK's three readers of one message; they must agree."""
    headers = dict(properties.headers or {})
    by_binding = rabbitmq.from_rabbitmq_event(
        rabbitmq.RabbitMQMessage(headers=headers, content_type=properties.content_type, body=body)
    )
    by_format = JSONFormat().read(None, body)
    by_http = http.from_http_event(http.HTTPMessage(headers={"content-type": properties.content_type}, body=body))
    assert by_binding.get_attributes() == by_format.get_attributes() == by_http.get_attributes()
    assert by_binding.get_data() == by_format.get_data() == by_http.get_data()
    return by_binding


def test_the_sdk_reads_every_status_change_the_services_publish_with_the_contracts_attributes(pipeline):
    pipeline.carrier.fate = lambda order_number: FATES[order_number]
    watcher, queue = _watch(pipeline.amqp_url)
    pipeline.start_all_services()
    items = {}
    for n, order_number in enumerate(FATES):
        package_id, item = f"PKG-READ-{n}", 41_000 + n
        event = package_packed(package_id, order_number, [item])
        event["traceparent"] = f"00-{TRACE_ID}-{uuid.uuid4().hex[:16]}-01"
        pipeline.publisher.publish("package.packed", json.dumps(event).encode())
        shipped = {**package_shipped(package_id), "traceparent": event["traceparent"]}
        pipeline.publisher.publish("package.shipped", json.dumps(shipped).encode())
        items[package_id] = (order_number, item)
    expected = sum(len(path) for path in PATHS.values())
    channel = watcher.channel()
    wait_until(
        lambda: channel.queue_declare(queue, passive=True).method.message_count >= expected,
        120,
        message="every change of every fate on the watcher's queue",
    )
    published = _take_all(watcher, queue)
    watcher.close()

    assert len(published) == expected
    seen_keys, by_package = set(), {}
    for method, properties, body in published:
        event = _read_three_ways(properties, body)
        # The contract's message properties (§1) and envelope (§2).
        assert properties.content_type == "application/cloudevents+json" and properties.delivery_mode == 2
        assert event.get_specversion() == "1.0"
        assert event.get_id() == properties.message_id
        assert event.get_type() == properties.type == "ShipmentStatusChanged"
        assert event.get_source().startswith("/oms-shipments/")
        assert event.get_datacontenttype() == "application/json"
        assert isinstance(event.get_time(), datetime) and event.get_time().tzinfo is not None
        change = ShipmentStatusChanged.model_validate(event.get_data())
        assert event.get_subject() == change.package_id
        prefix = "shipment.info_changed." if change.status == change.previous_status else "shipment.status_changed."
        assert method.routing_key == prefix + change.status.value
        # The trace context the upstream sent, carried on as the distributed-tracing extension
        # and as the AMQP header (docs/decisions.md, "Tracing").
        # The tracker's changes (after shipped) are caused by no event: they carry none.
        traceparent = event.get_extension("traceparent")
        assert (properties.headers or {}).get("traceparent") == traceparent
        if change.status.value in ("pending", "registered", "shipped"):
            assert traceparent is not None and traceparent.startswith(f"00-{TRACE_ID}-"), change.status
        seen_keys.add(method.routing_key)
        by_package.setdefault(change.package_id, []).append(change)

    assert {f"shipment.status_changed.{s.value}" for s in ShipmentStatus} <= seen_keys
    for package_id, changes in by_package.items():
        order_number, item = items[package_id]
        changes.sort(key=lambda change: change.sequence)
        assert [c.status.value for c in changes] == PATHS[order_number], package_id
        assert [c.sequence for c in changes] == list(range(1, len(changes) + 1))
        assert all(c.order_item_ids == [item] for c in changes)
    assert "Traceback" not in pipeline.logs()


def test_the_sdk_reads_the_dead_letter_copies_of_cloudevents_in_either_mode_as_they_were_sent(pipeline):
    pipeline.start("packer")
    sent = {}
    for mode in ("structured", "binary"):
        data = package_packed(f"PKG-DL-{mode}", f"ORD-DL-{mode}", [42_000 + len(sent)])["data"]
        data["carrier"] = "no-such-carrier"  # a carrier code not in the carriers file: dead-lettered at once
        event = CloudEvent(
            attributes={
                "type": "PackagePacked",
                "source": "/oms/erp/warehouse-3",
                "subject": data["package_id"],
                "datacontenttype": "application/json",
                "traceparent": f"00-{TRACE_ID}-00f067aa0ba902b7-01",
            },
            data=data,
        )
        message = (rabbitmq.to_structured_event if mode == "structured" else rabbitmq.to_binary_event)(event)
        pipeline.publisher.publish(
            "package.packed",
            message.body,
            content_type=message.content_type,
            headers=dict(message.headers or {}) or None,
        )
        sent[event.get_id()] = (mode, event)

    dlq = "oms-shipments.packer.dlq"
    wait_until(lambda: pipeline.publisher.queue_depth(dlq) == 2, 60, message="both dead letters")
    letters = pipeline.publisher.get_all(dlq)

    assert len(letters) == 2
    for properties, body in letters:
        headers = dict(properties.headers or {})
        copy = rabbitmq.from_rabbitmq_event(
            rabbitmq.RabbitMQMessage(headers=headers, content_type=properties.content_type, body=body)
        )
        mode, original = sent[copy.get_id()]
        assert copy.get_attributes() == original.get_attributes(), mode
        assert copy.get_data() == original.get_data()
        assert headers["x-oms-service"] == "packer" and "unknown carrier" in headers["x-oms-error-message"]
        if mode == "structured":
            assert JSONFormat().read(None, body).get_attributes() == original.get_attributes()
