"""The whole flow, as other systems see it: raw JSON bytes in with pika, HTTP calls out."""

from __future__ import annotations

import json
import random

import pika

from services.standins.sandbox_carrier import FATES

from events import package_packed, package_shipped, to_bytes
from harness import wait_until

# What Omnitron must receive for each order item, per carrier fate, in this order.
EXPECTED_CALLS = {
    ("SHIPPING", "DELIVERED"): [("extra", "pending"), ("extra", "registered"), ("bulk", "500"), ("bulk", "550")],
    ("SHIPPING", "DELIVERY_FAILED"): [
        ("extra", "pending"),
        ("extra", "registered"),
        ("bulk", "500"),
        ("extra", "delivery_failed"),
    ],
    ("SHIPPING", "READY_FOR_PICKUP", "DELIVERED"): [
        ("extra", "pending"),
        ("extra", "registered"),
        ("bulk", "500"),
        ("bulk", "520"),
        ("bulk", "550"),
    ],
    # The stale SHIPPING after the attempted delivery must not move the status back.
    ("SHIPPING", "ATTEMPTED_DELIVERY", "SHIPPING", "DELIVERED"): [
        ("extra", "pending"),
        ("extra", "registered"),
        ("bulk", "500"),
        ("bulk", "540"),
        ("bulk", "550"),
    ],
}
FATE_SCRIPTS = [tuple(script) for script in FATES.values()]
assert set(FATE_SCRIPTS) == set(EXPECTED_CALLS), "the sandbox's fates and this test's table must agree"


def _status_events_queue(amqp_url: str) -> tuple[pika.BlockingConnection, str]:
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    channel = connection.channel()
    queue = channel.queue_declare("", exclusive=True).method.queue
    channel.queue_bind(queue, "oms.events", routing_key="shipment.status_changed.*")
    return connection, queue


def _drain_status_events(connection: pika.BlockingConnection, queue: str) -> list[dict]:
    channel = connection.channel()
    events = []
    while True:
        method, properties, body = channel.basic_get(queue, auto_ack=True)
        if method is None:
            return events
        event = json.loads(body)
        assert properties.message_id == event["id"]
        assert properties.type == "ShipmentStatusChanged"
        assert properties.delivery_mode == 2
        assert method.routing_key == f"shipment.status_changed.{event['data']['status']}"
        events.append(event)


def test_a_hundred_and_twenty_packages_reach_omnitron_with_exactly_the_calls_their_fates_dictate(pipeline):
    fates = {}
    packages = []
    for n in range(120):
        order_number = f"ORD-{n:04d}"
        fates[order_number] = FATE_SCRIPTS[n % len(FATE_SCRIPTS)]
        item_ids = [10_000 + 2 * n] if n % 3 else [10_000 + 2 * n, 10_001 + 2 * n]
        packages.append((f"PKG-{n:04d}", order_number, item_ids))
    pipeline.carrier.fate = lambda order_number: list(fates[order_number])
    watcher, status_queue = _status_events_queue(pipeline.amqp_url)
    pipeline.start_all_services()

    rng = random.Random(7)
    for n, (package_id, order_number, item_ids) in enumerate(packages):
        packed = package_packed(package_id, order_number, item_ids, payment=n % 5 == 0)
        shipped = package_shipped(package_id)
        # Every 10th package is handed over before it is packed; every 7th event is sent twice.
        order = [shipped, packed] if n % 10 == 0 else [packed, shipped]
        for event in order:
            routing_key = "package.packed" if event["type"] == "PackagePacked" else "package.shipped"
            copies = 2 if rng.random() < 1 / 7 else 1
            for _ in range(copies):
                pipeline.publisher.publish(
                    routing_key, to_bytes(event), message_id=event["id"], event_type=event["type"]
                )

    expected = {item: EXPECTED_CALLS[fates[order]] for _, order, items in packages for item in items}

    def all_relayed():
        return sum(
            len(pipeline.omnitron.calls_for_item(item)) >= len(calls) for item, calls in expected.items()
        ) == len(expected)

    wait_until(all_relayed, timeout=120, message="every item's Omnitron calls")
    # Nothing more may arrive: a late duplicate or regression would show up here.
    pipeline.publisher.queue_depth("oms-shipments.omnitron-publisher")
    wait_until(lambda: pipeline.publisher.queue_depth("oms-shipments.omnitron-publisher") == 0, 10)

    for item, calls in expected.items():
        assert pipeline.omnitron.calls_for_item(item) == calls, f"order item {item}"
    # Registration: the carrier got each shipment once, with its payment only for pay on delivery.
    registered_orders = sorted(r["orderNumber"] for r in pipeline.carrier.registrations.values())
    assert registered_orders == sorted(order for _, order, _ in packages)
    for n, (_, order_number, _) in enumerate(packages):
        body = next(r for r in pipeline.carrier.registrations.values() if r["orderNumber"] == order_number)
        assert ("payment" in body) == (n % 5 == 0)

    # Published status events: one per change, sequences 1, 2, 3… without gaps or repeats.
    events = _drain_status_events(watcher, status_queue)
    watcher.close()
    by_shipment: dict[str, list[dict]] = {}
    for event in events:
        by_shipment.setdefault(event["data"]["shipment_id"], []).append(event["data"])
    assert len(by_shipment) == len(packages)
    for changes in by_shipment.values():
        sequences = [c["sequence"] for c in changes]
        assert sequences == list(range(1, len(sequences) + 1))
        statuses = [c["status"] for c in changes]
        assert statuses[:3] == ["pending", "registered", "shipped"]
        assert statuses[-1] in ("delivered", "delivery_failed")
        assert all(c["previous_status"] == p for c, p in zip(changes[1:], statuses))
    assert "Traceback" not in pipeline.logs()
