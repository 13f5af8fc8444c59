"""The chaos workload: packages with random fates, and a feeder that sends them as upstream does."""

from __future__ import annotations

import random
import threading
import time
import uuid
from dataclasses import dataclass, field

from services.standins.sandbox_carrier import FATES

import harness
from checker import CANCEL, MANUAL, SET_PREFIX, expected_history, omnitron_call
from events import envelope, package_packed, package_shipped, to_bytes

FATE_SCRIPTS = [tuple(script) for script in FATES.values()]
#: The carrier code without integration the chaos carriers file adds.
MANUAL_CARRIER = "courier"
# One package in six gets operator commands (CONTRACT.md §2): cancelled before its hand-over
# (the cancellation sometimes before its packing), delivered by an employee's status set once
# shipped, or a courier without integration, shipped by hand and delivered by a status set.
COMMAND_FATES = [(CANCEL,), ("SHIPPING", SET_PREFIX + "delivered"), (MANUAL, SET_PREFIX + "delivered")]
ROUTING_KEYS = {
    "PackagePacked": "package.packed",
    "PackageShipped": "package.shipped",
    "PackageCancelled": "package.cancelled",
    "ShipmentStatusSet": "package.shipment_status_set",
}


def status_set_of(package: "Package") -> str | None:
    """The status an employee sets once the package is shipped, if its fate says so."""
    for step in package.fate:
        if step.startswith(SET_PREFIX) and step not in (CANCEL, MANUAL):
            return step[len(SET_PREFIX) :]
    return None


@dataclass
class Package:
    package_id: str
    order_number: str
    item_ids: list[int]
    fate: tuple[str, ...]
    events: list[dict] = field(default_factory=list)  # in the order they are first sent

    @property
    def final_call(self) -> tuple[str, str]:
        return omnitron_call(expected_history(self.fate)[-1])


def workload(rng: random.Random, count: int) -> tuple[list[Package], list[dict]]:
    """Packages with random fates and 1-3 items, and the events to send, in sending order.

    One package in five is handed over before it is packed; one event in eight is sent
    twice at once, one in ten again later (after other packages, often after a fault),
    and one in twenty again later under a new id (upstream sending it anew)."""
    packages, keyed = [], []
    for n in range(count):
        items = [500_000 + 4 * n + i for i in range(rng.choice((1, 2, 2, 3)))]
        fate = rng.choice(COMMAND_FATES) if rng.random() < 1 / 6 else rng.choice(FATE_SCRIPTS)
        package = Package(f"PKG-C{n:04d}", f"ORD-C{n:04d}", items, fate)
        packed = package_packed(
            package.package_id,
            package.order_number,
            items,
            payment=n % 5 == 0,
            carrier=MANUAL_CARRIER if MANUAL in fate else "sandbox",
        )
        shipped = package_shipped(package.package_id)
        if MANUAL in fate:
            shipped["data"]["tracking_number"] = f"MAN-{n:04d}"
        if CANCEL in fate:  # never handed over
            shipped = envelope(
                "PackageCancelled",
                {"package_id": package.package_id, "reason": "chaos", "cancelled_at": "2026-11-27T11:00:00Z"},
            )
        package.events = [shipped, packed] if rng.random() < 0.2 else [packed, shipped]
        packages.append(package)
        for m, event in enumerate(package.events):
            key = 2 * n + m
            keyed.append((key, event))
            if rng.random() < 1 / 8:
                keyed.append((key + 0.5, event))
            if rng.random() < 1 / 10:
                keyed.append((key + rng.randint(10, 60), event))
            if rng.random() < 1 / 20:
                keyed.append((key + rng.randint(10, 60), {**event, "id": str(uuid.UUID(int=rng.getrandbits(128)))}))
    return packages, [event for _, event in sorted(keyed, key=lambda pair: pair[0])]


class Feeder(threading.Thread):
    """Sends the events as upstream does, spread over ``spread_s``; waits out broker outages.

    The sending side is the test's: an event the broker did not confirm is sent again
    (same id) once a new connection is up, so nothing is lost before the services see it.
    """

    def __init__(self, pipeline, sends: list[dict], spread_s: float):
        super().__init__(name="feeder", daemon=True)
        self.pipeline, self.sends, self.spread_s = pipeline, sends, spread_s
        self.sent = 0
        self.resent = 0
        self.stopping = threading.Event()

    def run(self) -> None:
        started = time.monotonic()
        for n, event in enumerate(self.sends):
            self.stopping.wait(max(0.0, started + n * self.spread_s / len(self.sends) - time.monotonic()))
            routing_key = ROUTING_KEYS[event["type"]]
            while not self.stopping.is_set():
                try:
                    if self.pipeline.publisher is None:
                        self.pipeline.publisher = harness.RawPublisher(self.pipeline.amqp_url)
                    self.pipeline.publisher.publish(
                        routing_key, to_bytes(event), message_id=event["id"], event_type=event["type"]
                    )
                    self.sent += 1
                    break
                except Exception:  # the broker is away: a new connection, the same event again
                    if self.pipeline.publisher is not None:
                        self.pipeline.publisher.close()
                    self.pipeline.publisher = None
                    self.resent += 1
                    self.stopping.wait(0.5)

    def finish(self, timeout: float) -> None:
        self.join(timeout)
        self.stopping.set()
        self.join(10)
        deadline = time.monotonic() + 60
        while self.pipeline.publisher is None:  # the fixture closes it at the end
            try:
                self.pipeline.publisher = harness.RawPublisher(self.pipeline.amqp_url)
            except Exception:
                if time.monotonic() > deadline:
                    self.pipeline.publisher = _Closed()
                time.sleep(0.5)


class _Closed:
    def close(self) -> None:
        pass


class Commander(threading.Thread):
    """An employee: sets each package's status (ShipmentStatusSet, sent twice) once the
    database shows it shipped, as a person looking at the shipment would; waits out outages."""

    def __init__(self, pipeline, packages: list[Package]):
        super().__init__(name="commander", daemon=True)
        self.pipeline = pipeline
        self.waiting = {p.package_id: status for p in packages if (status := status_set_of(p))}
        self.sent = 0
        self.stopping = threading.Event()

    def run(self) -> None:
        import psycopg

        publisher = None
        while self.waiting and not self.stopping.wait(0.5):
            try:
                with psycopg.connect(self.pipeline.database_url, connect_timeout=5) as connection:
                    shipped = {
                        row[0]
                        for row in connection.execute(
                            "SELECT package_id FROM shipments WHERE status = 'shipped' AND package_id = ANY(%s)",
                            (list(self.waiting),),
                        )
                    }
                for package_id in sorted(shipped):
                    event = envelope(
                        "ShipmentStatusSet",
                        {
                            "package_id": package_id,
                            "status": self.waiting[package_id],
                            "reason": "chaos",
                            "set_at": "2026-11-28T09:00:00Z",
                        },
                    )
                    if publisher is None:
                        publisher = harness.RawPublisher(self.pipeline.amqp_url)
                    for _ in range(2):
                        publisher.publish(
                            ROUTING_KEYS["ShipmentStatusSet"],
                            to_bytes(event),
                            message_id=event["id"],
                            event_type=event["type"],
                        )
                    self.sent += 1
                    del self.waiting[package_id]
            except Exception:  # the broker or the database is away: again shortly
                if publisher is not None:
                    publisher.close()
                publisher = None
        if publisher is not None:
            publisher.close()

    def finish(self, timeout: float) -> None:
        self.join(timeout)
        self.stopping.set()
        self.join(10)
