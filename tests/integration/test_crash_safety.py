"""Killing a service with SIGKILL between its database commit and its broker ack loses
nothing and applies nothing twice.

Each test arms one named crash point (shared/faults.py, ``OMS_FAULT_CRASH_AT``) in one
``oms-shipments run`` process, feeds raw events in, waits for the process to kill
itself, restarts it unarmed and, once every order item is final in Omnitron, stops
the pipeline cleanly and audits everything: the shipments, their status histories,
the inboxes, the Omnitron relay log, the carrier's and Omnitron's request logs.
"""

from __future__ import annotations

import json
import os
import random
import time
from collections import Counter
from dataclasses import dataclass, field

import httpx
import pika
import psycopg
import pytest
from psycopg.rows import dict_row

from shared import naming

import harness
from events import package_packed, package_shipped, to_bytes
from harness import wait_until

SERVICES = ("packer", "shipper", "tracker", "omnitron-publisher")
CONSUMERS = ("packer", "shipper", "omnitron-publisher")

# What each shipment status becomes in Omnitron, per item (CONTRACT.md §3 and §5).
OMNITRON_CALL = {
    "pending": ("extra", "pending"),
    "registered": ("extra", "registered"),
    "shipped": ("bulk", "500"),
    "ready_for_pickup": ("bulk", "520"),
    "attempted_delivery": ("bulk", "540"),
    "delivered": ("bulk", "550"),
    "delivery_failed": ("extra", "delivery_failed"),
}


@dataclass(frozen=True)
class Fate:
    script: tuple[str, ...]  # what the sandbox carrier answers, query after query
    history: tuple[str, ...]  # the shipment's status history it must lead to

    @property
    def omnitron_calls(self) -> list[tuple[str, str]]:
        return [OMNITRON_CALL[status] for status in self.history]


_HANDED_OVER = ("pending", "registered", "shipped")
# The sandbox carrier's own fates, as the end-to-end test uses them.
FATES = [
    Fate(("SHIPPING", "DELIVERED"), _HANDED_OVER + ("delivered",)),
    Fate(("SHIPPING", "DELIVERY_FAILED"), _HANDED_OVER + ("delivery_failed",)),
    Fate(("SHIPPING", "READY_FOR_PICKUP", "DELIVERED"), _HANDED_OVER + ("ready_for_pickup", "delivered")),
    # The stale SHIPPING after the attempted delivery must not move the status back.
    Fate(
        ("SHIPPING", "ATTEMPTED_DELIVERY", "SHIPPING", "DELIVERED"), _HANDED_OVER + ("attempted_delivery", "delivered")
    ),
]
# Fates in which every carrier answer moves the shipment on: each answer the tracker
# records is a status change.
MOVING_FATES = [
    Fate(("READY_FOR_PICKUP", "DELIVERED"), _HANDED_OVER + ("ready_for_pickup", "delivered")),
    Fate(("ATTEMPTED_DELIVERY", "DELIVERED"), _HANDED_OVER + ("attempted_delivery", "delivered")),
    Fate(("DELIVERED",), _HANDED_OVER + ("delivered",)),
    Fate(("DELIVERY_FAILED",), _HANDED_OVER + ("delivery_failed",)),
]


@dataclass
class Package:
    package_id: str
    order_number: str
    item_ids: list[int]
    fate: Fate
    packed: dict = field(init=False)
    shipped: dict = field(init=False)

    def __post_init__(self):
        self.packed = package_packed(self.package_id, self.order_number, self.item_ids)
        self.shipped = package_shipped(self.package_id)


@dataclass
class Flow:
    """A handful of packages with fixed fates, and the events that carry them in."""

    packages: list[Package]

    @classmethod
    def of(cls, count: int, fates: list[Fate]) -> "Flow":
        packages = []
        for n in range(count):
            items = [20_000 + 2 * n] if n % 3 else [20_000 + 2 * n, 20_001 + 2 * n]
            packages.append(Package(f"PKG-{n:04d}", f"ORD-{n:04d}", items, fates[n % len(fates)]))
        return cls(packages)

    def use_fates(self, pipeline) -> None:
        scripts = {p.order_number: list(p.fate.script) for p in self.packages}
        pipeline.carrier.fate = lambda order_number: list(scripts[order_number])

    def publish(self, pipeline) -> None:
        """Raw bytes, as upstream sends them; every 4th package is handed over before it is packed."""
        for n, package in enumerate(self.packages):
            for event in [package.shipped, package.packed] if n % 4 == 0 else [package.packed, package.shipped]:
                routing_key = "package.packed" if event["type"] == "PackagePacked" else "package.shipped"
                pipeline.publisher.publish(
                    routing_key, to_bytes(event), message_id=event["id"], event_type=event["type"]
                )

    @property
    def expected_calls(self) -> dict[int, list[tuple[str, str]]]:
        return {item: p.fate.omnitron_calls for p in self.packages for item in p.item_ids}

    def by_package(self) -> dict[str, Package]:
        return {p.package_id: p for p in self.packages}


# ---- the crashing process ------------------------------------------------------------------


def start_armed(pipeline, service: str, crash_at: str, **settings: str) -> harness.ServiceProcess:
    env = {**pipeline.env, "OMS_FAULT_CRASH_AT": crash_at, **settings}
    process = harness.ServiceProcess(service, env, pipeline.tmp_path / f"{service}-armed.log").start()
    pipeline.processes.append(process)
    return process


def wait_for_crash(process: harness.ServiceProcess, timeout: float = 30) -> None:
    try:
        wait_until(lambda: process.process.poll() is not None, timeout, message=f"{process.service} to crash")
    except AssertionError:
        raise AssertionError(
            f"{process.service} never reached its crash point "
            f"{process.env['OMS_FAULT_CRASH_AT']}:\n{process.log_text()[-3000:]}"
        ) from None
    assert process.process.returncode == -9, f"{process.service} ended otherwise:\n{process.log_text()[-3000:]}"


def broker(pipeline) -> pika.BlockingConnection:
    """A connection of the test's own, without heartbeats: it may sit idle while services work."""
    return pika.BlockingConnection(pika.URLParameters(pipeline.amqp_url + "?heartbeat=0"))


def held_messages(pipeline, service: str) -> list[tuple[str, dict]]:
    """(message id, event) of every message waiting in a service's queue.

    They are only looked at: closing the connection hands them back to the broker,
    in their places, unacknowledged."""
    connection = broker(pipeline)
    try:
        channel = connection.channel()
        held = []
        while True:
            method, properties, body = channel.basic_get(naming.work_queue(service), auto_ack=False)
            if method is None:
                return held
            held.append((properties.message_id, json.loads(body)))
    finally:
        connection.close()


def wait_for_held(pipeline, service: str, wanted, what: str) -> list[tuple[str, dict]]:
    """Waits until the broker, having taken back what the dead process held, holds ``wanted`` ones."""
    return wait_until(
        lambda: [(i, e) for i, e in held_messages(pipeline, service) if wanted(i, e)],
        10,
        message=f"{service}'s queue to hold {what}",
    )


def queue_depths(pipeline, queues: list[str]) -> dict[str, int]:
    connection = broker(pipeline)
    try:
        channel = connection.channel()
        return {queue: channel.queue_declare(queue, passive=True).method.message_count for queue in queues}
    finally:
        connection.close()


# ---- watching and auditing -----------------------------------------------------------------


class StatusTap:
    """A queue of our own on ``shipment.status_changed.*``: every copy the broker carried."""

    def __init__(self, pipeline):
        self._connection = broker(pipeline)
        channel = self._connection.channel()
        self._queue = channel.queue_declare("", exclusive=True).method.queue
        channel.queue_bind(self._queue, "oms.events", routing_key="shipment.status_changed.*")
        self._channel = channel

    def message_ids(self) -> Counter:
        seen: Counter = Counter()
        while True:
            method, properties, body = self._channel.basic_get(self._queue, auto_ack=True)
            if method is None:
                self._connection.close()
                return seen
            assert properties.message_id == json.loads(body)["id"]
            seen[properties.message_id] += 1


def query(pipeline, sql: str, *params) -> list[dict]:
    with psycopg.connect(pipeline.database_url, row_factory=dict_row) as connection:
        return connection.execute(sql, params).fetchall()


def every_item_is_final(pipeline, flow: Flow) -> bool:
    return all(
        len(collapse(pipeline.omnitron.calls_for_item(item))) >= len(calls)
        for item, calls in flow.expected_calls.items()
    )


def collapse(calls: list) -> list:
    """The calls with an immediate repeat taken out: what Omnitron ends up showing, in order."""
    return [call for n, call in enumerate(calls) if n == 0 or call != calls[n - 1]]


def wait_until_final_and_quiet(pipeline, flow: Flow, timeout: float = 60) -> None:
    """Every item final in Omnitron, then no event stored, queued or in a consumer's hands."""
    wait_until(lambda: every_item_is_final(pipeline, flow), timeout, message="every order item to be final in Omnitron")
    vhost = pipeline.amqp_url.rsplit("/", 1)[1]
    queues = [naming.work_queue(service) for service in CONSUMERS]

    def quiet() -> bool:
        if query(pipeline, "SELECT count(*) AS n FROM outbox")[0]["n"]:
            return False
        if any(queue_depths(pipeline, queues).values()):
            return False
        # Only the broker knows what is delivered but not yet acknowledged.
        listing = harness.rabbitmqctl(
            "list_queues", "-p", vhost, "--quiet", "--no-table-headers", "name", "messages", "messages_unacknowledged"
        )
        rows = [line.split() for line in listing.splitlines() if line.startswith(naming.PREFIX)]
        dead = [row for row in rows if row[0].endswith(".dlq") and row[1] != "0"]
        assert not dead, f"dead-lettered: {dead}\n{pipeline.logs()[-4000:]}"
        return all(row[1:] == ["0", "0"] for row in rows)

    wait_until(quiet, 30, interval=0.1, message="the outbox and every queue to be empty")


def stop_cleanly(pipeline) -> None:
    running = [p for p in pipeline.processes if p.alive()]
    for process in running:
        process.process.terminate()
    for process in running:
        assert process.process.wait(60) == 0, f"{process.service} did not stop cleanly:\n{process.log_text()[-3000:]}"


def audit(pipeline, flow: Flow, tap_ids: Counter) -> dict[str, dict]:
    """Checks the database against the flow; returns the shipments by package id."""
    rows = query(pipeline, "SELECT * FROM shipments")
    # Every package's shipment exists, exactly once.
    assert sorted(r["package_id"] for r in rows) == sorted(p.package_id for p in flow.packages), (
        "one shipment per package"
    )
    shipments = {row["package_id"]: row for row in rows}
    changes: dict[str, list[dict]] = {}
    for row in query(pipeline, "SELECT * FROM shipment_status_changes ORDER BY shipment_id, sequence"):
        changes.setdefault(row["shipment_id"], []).append(row)
    packages = flow.by_package()
    for package_id, shipment in shipments.items():
        history = changes.get(shipment["id"], [])
        # Sequences 1..n, no gap, no repeat; each change starts where the last one ended;
        # and the whole history is what the carrier's answers dictate: never back, nothing extra.
        assert [c["sequence"] for c in history] == list(range(1, len(history) + 1)), package_id
        assert [c["previous_status"] for c in history] == [None] + [c["status"] for c in history[:-1]], package_id
        assert tuple(c["status"] for c in history) == packages[package_id].fate.history, package_id
        assert (shipment["status"], shipment["sequence"]) == (history[-1]["status"], len(history)), package_id
    change_ids = {c["event_id"]: c for rows in changes.values() for c in rows}
    assert len(change_ids) == sum(len(rows) for rows in changes.values()), "a status event id was used twice"

    # Each consumer's inbox holds each event it was sent exactly once (its primary key
    # makes a second row impossible): no event lost, none applied under a second row.
    inbox: dict[str, set] = {}
    for row in query(pipeline, "SELECT consumer, event_id FROM inbox"):
        inbox.setdefault(row["consumer"], set()).add(row["event_id"])
    pending_ids = {i for i, c in change_ids.items() if c["status"] == "pending"}
    assert set(inbox) == set(CONSUMERS)
    assert inbox["packer"] == {p.packed["id"] for p in flow.packages}, "packer inbox"
    assert inbox["shipper"] == {p.shipped["id"] for p in flow.packages} | pending_ids, "shipper inbox"
    assert inbox["omnitron-publisher"] == set(change_ids), "omnitron-publisher inbox"

    # One Omnitron relay per change, none skipped, none twice.
    relays = query(pipeline, "SELECT shipment_id, sequence, outcome FROM omnitron_relays")
    relayed = Counter((r["shipment_id"], r["sequence"], r["outcome"]) for r in relays)
    once_each = Counter((c["shipment_id"], c["sequence"], "sent") for c in change_ids.values())
    assert relayed == once_each, (
        f"relays beyond one 'sent' per change: {relayed - once_each}, missing: {once_each - relayed}"
    )
    assert query(pipeline, "SELECT count(*) AS n FROM outbox")[0]["n"] == 0

    # The broker carried every stored status event, and nothing else.
    assert set(tap_ids) == set(change_ids), "status events on the broker vs. in the database"
    return shipments


def assert_queues_empty(pipeline) -> None:
    """After a clean stop: nothing handed back unhandled, nothing dead-lettered."""
    queues = [name(service) for service in CONSUMERS for name in (naming.work_queue, naming.dead_letter_queue)]
    assert queue_depths(pipeline, queues) == dict.fromkeys(queues, 0)


def carrier_registrations_per_shipment(pipeline) -> Counter:
    return Counter(r.shipment_id for r in pipeline.carrier.requests if r.method == "POST" and r.path == "/shipments")


def omnitron_requests(pipeline) -> Counter:
    return Counter((c["path"], json.dumps(c["body"], sort_keys=True)) for c in pipeline.omnitron.calls)


def finish_and_audit(pipeline, flow: Flow, tap: StatusTap, timeout: float = 60) -> tuple[dict[str, dict], Counter]:
    """Once every item is final and nothing is in flight, stops the pipeline cleanly and audits it."""
    wait_until_final_and_quiet(pipeline, flow, timeout)
    stop_cleanly(pipeline)
    tap_ids = tap.message_ids()
    shipments = audit(pipeline, flow, tap_ids)
    assert_queues_empty(pipeline)
    return shipments, tap_ids


def assert_omnitron_got_each_call_once(pipeline, flow: Flow) -> None:
    for item, calls in flow.expected_calls.items():
        assert pipeline.omnitron.calls_for_item(item) == calls, f"order item {item}"
    assert max(omnitron_requests(pipeline).values()) == 1, "a request reached Omnitron twice"


def assert_carrier_registered_each_shipment_once(pipeline) -> None:
    assert set(carrier_registrations_per_shipment(pipeline).values()) == {1}


# ---- the tests -----------------------------------------------------------------------------


def start_with_one_armed(pipeline, service: str, crash_at: str, **settings: str) -> harness.ServiceProcess:
    armed = start_armed(pipeline, service, crash_at, **settings)
    for other in SERVICES:
        if other != service:
            pipeline.start(other)
    return armed


@pytest.mark.parametrize(("service", "nth"), [("packer", 3), ("shipper", 4), ("omnitron-publisher", 5)])
def test_a_consumer_killed_between_its_commit_and_its_ack_gets_the_event_again_and_applies_it_once(
    pipeline_factory, service, nth
):
    pipeline = pipeline_factory(poll_interval_s=0.1)
    flow = Flow.of(8, FATES)
    flow.use_fates(pipeline)
    tap = StatusTap(pipeline)
    armed = start_with_one_armed(pipeline, service, f"after_commit:{service}:{nth}")
    flow.publish(pipeline)

    wait_for_crash(armed)
    # The event in hand is back in the queue, although its effect is committed.
    committed = {r["event_id"] for r in query(pipeline, "SELECT event_id FROM inbox WHERE consumer = %s", service)}
    wait_for_held(pipeline, service, lambda event_id, _: event_id in committed, "an event it already applied")
    pipeline.start(service)

    finish_and_audit(pipeline, flow, tap)
    assert_omnitron_got_each_call_once(pipeline, flow)
    assert_carrier_registered_each_shipment_once(pipeline)


def test_a_relay_killed_after_publishing_before_deleting_sends_its_batch_again_and_the_inboxes_absorb_it(
    pipeline_factory,
):
    pipeline = pipeline_factory(poll_interval_s=0.1)
    flow = Flow.of(10, FATES)
    flow.use_fates(pipeline)
    tap = StatusTap(pipeline)
    # The armed packer starts alone: its relay is the only one, so it is the one that
    # publishes the first pending events, and dies before it can forget them.
    armed = start_armed(pipeline, "packer", "after_publish:relay:2")
    flow.publish(pipeline)

    wait_for_crash(armed)
    stored = {r["event_id"] for r in query(pipeline, "SELECT event_id FROM outbox")}
    assert stored, "the relay's batch is not stored any more"
    pipeline.start("packer")
    for service in SERVICES[1:]:
        pipeline.start(service)

    _, tap_ids = finish_and_audit(pipeline, flow, tap)
    # The batch went out twice, yet every consumer applied every event once.
    twice = {event_id for event_id, copies in tap_ids.items() if copies > 1}
    assert twice and twice <= stored, "the relay's batch was not published again"
    assert max(tap_ids.values()) == 2
    assert_omnitron_got_each_call_once(pipeline, flow)
    assert_carrier_registered_each_shipment_once(pipeline)


def test_a_tracker_killed_right_after_recording_a_carrier_status_loses_no_status_change(pipeline_factory):
    pipeline = pipeline_factory(poll_interval_s=0.1)
    flow = Flow.of(8, MOVING_FATES)
    flow.use_fates(pipeline)
    tap = StatusTap(pipeline)
    for service in CONSUMERS:
        pipeline.start(service)
    flow.publish(pipeline)
    wait_until(
        lambda: (
            query(pipeline, "SELECT count(*) AS n FROM shipments WHERE status = 'shipped'")
            == [{"n": len(flow.packages)}]
        ),
        30,
        message="every shipment to be handed over",
    )
    # One shipment at a time: the tracker's commits alternate claim, record, claim, record...
    # and every answer moves a shipment on, so the 6th commit records the 3rd status change.
    armed = start_armed(pipeline, "tracker", "after_commit:tracker:6", OMS_TRACKER_BATCH="1")

    wait_for_crash(armed)
    assert query(
        pipeline,
        "SELECT count(*) AS n FROM shipment_status_changes WHERE status NOT IN ('pending', 'registered', 'shipped')",
    ) == [{"n": 3}]
    pipeline.start("tracker")

    finish_and_audit(pipeline, flow, tap)
    assert_omnitron_got_each_call_once(pipeline, flow)


def test_a_shipper_killed_after_the_carrier_registered_a_shipment_registers_it_again_under_the_same_tracking_number(
    pipeline_factory,
):
    pipeline = pipeline_factory(poll_interval_s=0.1)
    flow = Flow.of(8, FATES)
    flow.use_fates(pipeline)
    tap = StatusTap(pipeline)
    armed = start_with_one_armed(pipeline, "shipper", "after_carrier_registration:3")
    flow.publish(pipeline)

    wait_for_crash(armed)
    # The carrier has the shipment, our database does not, and the event is back in the queue.
    applied = {r["event_id"] for r in query(pipeline, "SELECT event_id FROM inbox WHERE consumer = 'shipper'")}
    [(_, event)] = wait_for_held(
        pipeline,
        "shipper",
        lambda event_id, e: (
            event_id not in applied
            and e["type"] == "ShipmentStatusChanged"
            and e["data"]["shipment_id"] in pipeline.carrier.registrations
        ),
        "the event of the registration in hand",
    )
    shipment_id = event["data"]["shipment_id"]
    assert query(pipeline, "SELECT status FROM shipments WHERE id = %s", shipment_id) == [{"status": "pending"}]
    pipeline.start("shipper")

    shipments, _ = finish_and_audit(pipeline, flow, tap)
    # Registered twice under one shipmentId: one carrier record, one tracking number.
    posts = carrier_registrations_per_shipment(pipeline)
    assert posts == Counter({s["id"]: 2 if s["id"] == shipment_id else 1 for s in shipments.values()})
    assert len(pipeline.carrier.registrations) == len(flow.packages)
    for shipment in shipments.values():
        tracked = httpx.get(f"{pipeline.carrier.url}/track/{shipment['tracking_number']}").json()
        assert tracked["shipmentId"] == shipment["id"]
    assert_omnitron_got_each_call_once(pipeline, flow)


def test_an_omnitron_publisher_killed_after_an_omnitron_call_repeats_only_that_call_and_never_an_older_one(
    pipeline_factory,
):
    pipeline = pipeline_factory(poll_interval_s=0.1)
    flow = Flow.of(8, FATES)
    flow.use_fates(pipeline)
    tap = StatusTap(pipeline)
    armed = start_with_one_armed(pipeline, "omnitron-publisher", "after_omnitron_call:5")
    flow.publish(pipeline)

    wait_for_crash(armed)
    # Omnitron has the call, the relay is not committed, and the event is back in the queue.
    relayed = {
        r["event_id"] for r in query(pipeline, "SELECT event_id FROM inbox WHERE consumer = 'omnitron-publisher'")
    }
    [(_, event)] = wait_for_held(
        pipeline,
        "omnitron-publisher",
        lambda event_id, e: (
            event_id not in relayed
            and OMNITRON_CALL[e["data"]["status"]] in pipeline.omnitron.calls_for_item(e["data"]["order_item_ids"][0])
        ),
        "the change whose Omnitron call went out",
    )
    in_hand = event["data"]
    pipeline.start("omnitron-publisher")

    finish_and_audit(pipeline, flow, tap)
    # At least once at the HTTP boundary: exactly one request reached Omnitron twice...
    requests = omnitron_requests(pipeline)
    assert [n for n in requests.values() if n > 1] == [2], "not exactly one request repeated, once"
    # ...the in-hand change's, right after its first copy: the same status, never an older one.
    repeats = 0
    for item, expected in flow.expected_calls.items():
        calls = pipeline.omnitron.calls_for_item(item)
        assert collapse(calls) == expected, f"order item {item}: {calls}"
        if len(calls) > len(expected):
            repeats += len(calls) - len(expected)
            assert item in in_hand["order_item_ids"]
            assert [a for a, b in zip(calls, calls[1:]) if a == b] == [OMNITRON_CALL[in_hand["status"]]]
    assert 1 <= repeats <= len(in_hand["order_item_ids"])
    assert_carrier_registered_each_shipment_once(pipeline)


@pytest.mark.chaos
def test_shipper_and_omnitron_publisher_killed_at_random_moments_lose_nothing_and_move_nothing_back(pipeline_factory):
    seed = int(os.environ.get("OMS_CHAOS_SEED", time.time_ns() % 1_000_000))
    rng = random.Random(seed)
    pipeline = pipeline_factory(poll_interval_s=0.1)
    pipeline.omnitron.latency_s = 0.05
    flow = Flow.of(40, FATES)
    flow.use_fates(pipeline)
    tap = StatusTap(pipeline)
    running = {service: pipeline.start(service)[0] for service in SERVICES}
    flow.publish(pipeline)

    # Kill when the carrier has seen so many registrations, or Omnitron so many requests:
    # random moments, but always while the victim still has work in hand.
    requests = sum(
        1 if OMNITRON_CALL[status][0] == "bulk" else len(p.item_ids) for p in flow.packages for status in p.fate.history
    )

    def registrations() -> int:
        return sum(carrier_registrations_per_shipment(pipeline).values())

    def omnitron_requests_made() -> int:
        return len(pipeline.omnitron.calls)

    triggers = [
        ("shipper", registrations, rng.randint(5, 30)),
        ("omnitron-publisher", omnitron_requests_made, rng.randint(20, requests // 3)),
        ("omnitron-publisher", omnitron_requests_made, rng.randint(requests // 2, requests - 30)),
    ]
    kills = list(triggers)
    print(f"chaos seed {seed} (OMS_CHAOS_SEED): kills {[(service, at) for service, _, at in kills]}")
    deadline = time.monotonic() + 90
    while triggers:
        assert time.monotonic() < deadline, f"seed {seed}: never reached {triggers}"
        for trigger in [t for t in triggers if t[1]() >= t[2]]:
            service = trigger[0]
            assert running[service].alive(), f"seed {seed}: {service} died by itself"
            running[service].kill9()
            assert running[service].process.returncode == -9
            time.sleep(rng.uniform(0, 0.5))
            running[service] = pipeline.start(service)[0]
            triggers.remove(trigger)
        time.sleep(0.01)

    shipments, _ = finish_and_audit(pipeline, flow, tap, timeout=120)
    publisher_kills = sum(service == "omnitron-publisher" for service, _, _ in kills)
    repeated_items = 0
    for item, expected in flow.expected_calls.items():
        calls = pipeline.omnitron.calls_for_item(item)
        # Nothing lost, nothing older after something newer; a repeat only right after itself.
        assert collapse(calls) == expected, f"seed {seed}: order item {item}: {calls}"
        assert len(calls) - len(expected) <= publisher_kills
        repeated_items += len(calls) > len(expected)
    # A kill interrupts at most one change in hand, which names at most two items here.
    assert repeated_items <= 2 * publisher_kills, f"seed {seed}"
    assert max(omnitron_requests(pipeline).values()) <= 2
    posts = carrier_registrations_per_shipment(pipeline)
    print(
        f"order items with a repeated Omnitron call: {repeated_items}; "
        f"registrations repeated at the carrier: {sum(posts.values()) - len(posts)}"
    )
    assert set(posts) == {s["id"] for s in shipments.values()}
    # A kill of the shipper interrupts at most one registration, which the carrier answers alike.
    assert sum(posts.values()) - len(shipments) <= sum(service == "shipper" for service, _, _ in kills)
    assert "Traceback" not in pipeline.logs()
