"""Handler threads with an ordering key: one key's deliveries in arrival order, different keys side by side."""

from __future__ import annotations

import threading
import zlib
from collections import defaultdict

from services.omnitron_publisher.service import SERVICE
from services.runtime.pipeline import Pipeline
from shared.delivery import Delivery
from shared.queue_worker import KeyedExecutor

import contract_examples as examples


def delivery(key: str) -> Delivery:
    return Delivery(body=key.encode(), content_type="application/json", routing_key="k", message_id=None)


def by_body(d: Delivery) -> str | None:
    return d.body.decode() or None


def test_one_keys_deliveries_run_in_arrival_order_on_one_thread():
    executor = KeyedExecutor(4, by_body, "test")
    seen: dict[str, list[tuple[int, str]]] = defaultdict(list)

    def handle(work, n):
        key = work[0][1].body.decode()
        seen[key].append((n, threading.current_thread().name))

    futures = [executor.submit(handle, [(None, delivery(f"shipment-{n % 7}"))], n) for n in range(700)]
    for future in futures:
        future.result(timeout=10)
    executor.shutdown()
    for key, runs in seen.items():
        assert [n for n, _ in runs] == sorted(n for n, _ in runs)
        assert len({thread for _, thread in runs}) == 1, key


def test_different_keys_are_handled_at_the_same_time():
    keys = {}
    n = 0
    while len(keys) < 2:  # two keys that land on different threads
        keys.setdefault(zlib.crc32(f"s{n}".encode()) % 4, f"s{n}")
        n += 1
    both_running = threading.Barrier(2, timeout=5)
    executor = KeyedExecutor(4, by_body, "test")
    futures = [executor.submit(lambda work: both_running.wait(), [(None, delivery(key))]) for key in keys.values()]
    for future in futures:
        future.result(timeout=10)  # a BrokenBarrierError if they had run one after the other
    executor.shutdown()


def test_the_omnitron_publisher_keys_by_shipment_of_the_parsed_event_and_lets_bad_input_through():
    pipeline = Pipeline(
        SERVICE.name, {"ShipmentStatusChanged": lambda event, uow: None}, lambda event: None, SERVICE.ordering_key
    )

    def key(body: bytes, routing_key: str = "shipment.status_changed.shipped") -> str | None:
        return pipeline.ordering_key(pipeline.decode(Delivery(body, "application/json", routing_key, None)))

    change = examples.to_bytes(
        examples.envelope("ShipmentStatusChanged", examples.status_changed(3, "shipped", "registered"))
    )
    assert key(change) == examples.status_changed(3, "shipped", "registered")["shipment_id"]
    assert key(b"not json") is None
    assert key(b"[1, 2]") is None
    assert key(change, routing_key="package.packed") is None  # refused: any thread, where it is dead-lettered
