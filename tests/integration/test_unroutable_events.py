"""The relay publishes mandatory: an event no queue is bound for stays stored and its shipment waits.

A real RabbitMQ vhost and a real PostgreSQL database; the relay runs as the services run
it, on a thread of its own.
"""

from __future__ import annotations

import json
import threading
import time

import pika
import psycopg
import pytest
from prometheus_client import REGISTRY

from shared.db import make_engine
from shared.outbox import Outbox
from shared.relay import OutboxRelay

from harness import wait_until

QUEUE = "test.watching"
BOUND = "shipment.status_changed.shipped"
UNBOUND = "shipment.status_changed.delivered"


def event(package_id: str, n: int) -> tuple[str, bytes]:
    event_id = f"{package_id}-{n}"
    return event_id, json.dumps(
        {
            "specversion": "1.0",
            "id": event_id,
            "source": "test",
            "type": "ShipmentStatusChanged",
            "subject": package_id,
            "data": {"n": n},
        },
        separators=(",", ":"),
    ).encode()


@pytest.fixture
def channel(amqp_url):
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url + "?heartbeat=0"))
    channel = connection.channel()
    channel.exchange_declare("oms.events", "topic", durable=True)
    channel.queue_declare(QUEUE, durable=True)
    channel.queue_bind(QUEUE, "oms.events", routing_key=BOUND)
    yield channel
    connection.close()


@pytest.fixture
def relay(amqp_url, database_url):
    engine = make_engine(database_url)
    stop = threading.Event()
    relay = OutboxRelay(engine=engine, amqp_url=amqp_url, stop=stop, batch=50, idle_s=0.05)
    thread = threading.Thread(target=relay.run, daemon=True)
    thread.start()
    yield engine, relay
    stop.set()
    thread.join(30)
    engine.dispose()


def store(engine, relay, *events: tuple[str, int, str]) -> None:
    with engine.begin() as connection:
        outbox = Outbox(connection)
        for package_id, n, routing_key in events:
            event_id, body = event(package_id, n)
            outbox.add(event_id, "ShipmentStatusChanged", routing_key, body)
    relay.wake()


def delivered(channel) -> list[str]:
    ids = []
    while True:
        method, properties, _ = channel.basic_get(QUEUE, auto_ack=True)
        if method is None:
            return ids
        ids.append(properties.message_id)


def stored(database_url) -> list[str]:
    with psycopg.connect(database_url) as connection:
        return [row[0] for row in connection.execute("SELECT event_id FROM outbox ORDER BY id")]


def returned_total() -> float:
    return REGISTRY.get_sample_value("oms_outbox_returned_total", {"routing_key": UNBOUND}) or 0


def test_an_unroutable_event_stays_stored_is_counted_and_goes_out_once_bound_before_its_shipment_s_later_event(
    channel, relay, database_url
):
    engine, outbox_relay = relay
    before = returned_total()
    store(engine, outbox_relay, ("PKG-A", 1, UNBOUND), ("PKG-B", 1, BOUND), ("PKG-A", 2, BOUND), ("PKG-B", 2, BOUND))

    seen = wait_until(lambda: delivered(channel), 20, message="the other shipment's events")
    wait_until(lambda: returned_total() >= before + 3, 20, message="the returns counted, round after round")
    seen += delivered(channel)
    assert seen == ["PKG-B-1", "PKG-B-2"]
    assert stored(database_url) == ["PKG-A-1", "PKG-A-2"], "the returned event and the one behind it stay stored"

    channel.queue_bind(QUEUE, "oms.events", routing_key=UNBOUND)
    store(engine, outbox_relay, ("PKG-A", 3, BOUND))
    arrived: list[str] = []
    wait_until(lambda: arrived.extend(delivered(channel)) or len(arrived) >= 3, 20, message="PKG-A's events")
    time.sleep(0.5)
    arrived += delivered(channel)
    assert arrived == ["PKG-A-1", "PKG-A-2", "PKG-A-3"]
    assert stored(database_url) == []
