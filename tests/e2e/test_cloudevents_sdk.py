"""The official CloudEvents SDK as the upstream and as the reader (CONTRACT.md §2): events it
writes in binary and in structured content mode are applied alike, and it reads every event
the services publish.

The SDK's RabbitMQ binding sets no AMQP ``message_id`` or ``type``: nothing here sets them
either, so the services must rely on the CloudEvents attributes alone.
"""

from __future__ import annotations

from datetime import datetime, timezone

import pika
from cloudevents.core.bindings import rabbitmq
from cloudevents.core.v1.event import CloudEvent

from events import package_packed, package_shipped
from harness import wait_until

PAIRS = 20
FIRST_ITEM = 30_000
DELIVERED = [("extra", "pending"), ("extra", "registered"), ("bulk", "500"), ("bulk", "550")]


def _sdk_event(plain: dict, content_type: str | None = "application/json") -> CloudEvent:
    """The hand-written upstream event of tests/events.py, made again with the SDK (without a
    data content type, binary mode sends no AMQP content type at all)."""
    attributes = {
        "type": plain["type"],
        "source": "/oms/erp/warehouse-3",
        "subject": plain["data"]["package_id"],
        "time": datetime(2026, 11, 27, 10, tzinfo=timezone.utc),
    }
    if content_type:
        attributes["datacontenttype"] = content_type
    return CloudEvent(attributes=attributes, data=plain["data"])


def _publish(channel, routing_key: str, message: rabbitmq.RabbitMQMessage) -> None:
    channel.basic_publish(
        "oms.events",
        routing_key,
        message.body,
        pika.BasicProperties(delivery_mode=2, content_type=message.content_type, headers=message.headers or None),
        mandatory=True,
    )


def _watch_status_events(amqp_url: str) -> tuple[pika.BlockingConnection, str]:
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


def test_twenty_packages_published_with_the_sdk_in_both_modes_are_applied_and_the_sdk_reads_every_change(pipeline):
    pipeline.carrier.fate = lambda order_number: ["SHIPPING", "DELIVERED"]
    watcher, status_queue = _watch_status_events(pipeline.amqp_url)
    pipeline.start_all_services()
    upstream = pika.BlockingConnection(pika.URLParameters(pipeline.amqp_url))
    channel = upstream.channel()
    channel.confirm_delivery()

    ids = {}
    for n in range(PAIRS):
        package_id, item = f"PKG-SDK-{n:02d}", FIRST_ITEM + n
        packed = _sdk_event(package_packed(package_id, f"ORD-SDK-{n:02d}", [item], payment=n % 4 == 0))
        shipped = _sdk_event(package_shipped(package_id), content_type=None if n % 5 == 0 else "application/json")
        # Half the pairs in each mode, and some pairs mixing the two.
        packed_mode = rabbitmq.to_binary_event if n % 2 else rabbitmq.to_structured_event
        shipped_mode = rabbitmq.to_binary_event if n % 3 else rabbitmq.to_structured_event
        _publish(channel, "package.packed", packed_mode(packed))
        _publish(channel, "package.shipped", shipped_mode(shipped))
        ids[package_id] = item
    upstream.close()

    wait_until(
        lambda: all(pipeline.omnitron.calls_for_item(item) == DELIVERED for item in ids.values()),
        120,
        message="every SDK-published package delivered in Omnitron",
    )
    for service in ("packer", "shipper"):
        assert pipeline.publisher.queue_depth(f"oms-shipments.{service}.dlq") == 0, f"{service} dead-lettered"
    registered = sorted(r["orderNumber"] for r in pipeline.carrier.registrations.values())
    assert registered == sorted(f"ORD-SDK-{n:02d}" for n in range(PAIRS))

    # The SDK reads back every change the services published, as any subscriber would.
    expected_changes = len(ids) * len(DELIVERED)
    watching = watcher.channel()
    wait_until(
        lambda: watching.queue_declare(status_queue, passive=True).method.message_count >= expected_changes,
        30,
        message="every published change on the watcher's queue",
    )
    published = _take_all(watcher, status_queue)
    watcher.close()
    assert len(published) == expected_changes
    by_package: dict[str, list[dict]] = {}
    for method, properties, body in published:
        message = rabbitmq.RabbitMQMessage(
            headers=dict(properties.headers or {}), content_type=properties.content_type, body=body
        )
        event = rabbitmq.from_rabbitmq_event(message)
        assert event.get_specversion() == "1.0"
        assert event.get_type() == "ShipmentStatusChanged"
        assert event.get_id() == properties.message_id
        assert event.get_source().startswith("/oms-shipments/")
        assert isinstance(event.get_time(), datetime) and event.get_time().tzinfo is not None
        data = event.get_data()
        assert method.routing_key == f"shipment.status_changed.{data['status']}"
        by_package.setdefault(data["package_id"], []).append(data)
    assert sorted(by_package) == sorted(ids)
    for package_id, changes in by_package.items():
        changes.sort(key=lambda change: change["sequence"])
        assert [c["status"] for c in changes] == ["pending", "registered", "shipped", "delivered"], package_id
        assert all(c["order_item_ids"] == [ids[package_id]] for c in changes)
    assert "Traceback" not in pipeline.logs()
