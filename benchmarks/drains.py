"""One service process draining a queued backlog, and the outbox relay draining a stored one.

A drain's rate is counted from its first applied event (the process has started,
connected and taken its first delivery) to the moment the wanted number of events is
applied and, where it says so, the outbox it filled is empty again: the relay's
publishes are part of the work.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone

import psycopg

from benchmarks.infra import Environment, Service, wait_for
from benchmarks.standins import OMNITRON_TOKEN
from benchmarks.workload import Upstream, package_packed, package_shipped
from shared import naming


@dataclass
class Drain:
    events: int
    seconds: float
    peak_rss_kb: int
    cpu_s: float = 0.0  # the process's CPU over the timed part

    @property
    def rate(self) -> float:
        return self.events / self.seconds

    @property
    def cpu_ms_per_event(self) -> float:
        return self.cpu_s * 1000 / self.events


def _watch(
    env: Environment, process: Service, consumer: str, wanted: int, empty_outbox: bool, timeout_s: float
) -> Drain:
    """Polls the consumer's inbox (and the outbox) until ``wanted`` events are applied."""
    with psycopg.connect(env.database_url, autocommit=True) as db:

        def applied() -> int:
            return db.execute("SELECT count(*) FROM inbox WHERE consumer = %s", (consumer,)).fetchone()[0]

        first = wait_for(lambda: applied() or None, 120, f"{consumer}'s first event", processes=[process])
        started, cpu_started = time.monotonic(), process.cpu_s()
        deadline = started + timeout_s
        while True:
            count = applied()
            done = count >= wanted
            if done and empty_outbox:
                done = db.execute("SELECT count(*) FROM outbox").fetchone()[0] == 0
            if done:
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"{consumer}: {count}/{wanted} applied after {timeout_s:g}s")
            if not process.alive():
                raise RuntimeError(f"{consumer} exited:\n{process.log_tail()}")
            time.sleep(0.05)
        seconds = time.monotonic() - started
    return Drain(count - first, seconds, process.peak_rss_kb(), process.cpu_s() - cpu_started)


def queue_packages(env: Environment, count: int, prefix: str) -> None:
    upstream = Upstream(env.amqp_url)
    try:
        for n in range(count):
            upstream.publish(package_packed(n, prefix))
    finally:
        upstream.close()
    queue = naming.work_queue("packer")
    wait_for(lambda: env.queue_depth(queue) >= count, 120, "the PackagePacked backlog to be queued", 0.2)


def queue_handovers(env: Environment, count: int, prefix: str) -> None:
    """PackageShipped for the first ``count`` packages, queued for the shipper before they are packed."""
    upstream = Upstream(env.amqp_url)
    try:
        for n in range(count):
            upstream.publish(package_shipped(n, prefix))
    finally:
        upstream.close()
    queue = naming.work_queue("shipper")
    wait_for(lambda: env.queue_depth(queue) >= count, 120, "the PackageShipped backlog to be queued", 0.2)


def packer(env: Environment, count: int) -> Drain:
    queue_packages(env, count, "DRAIN")
    process = env.service("packer")
    try:
        return _watch(env, process, "packer", count, empty_outbox=True, timeout_s=600)
    finally:
        process.stop()


def shipper(env: Environment, wanted: int) -> Drain:
    """``wanted`` events: the hand-overs queued first (:func:`queue_handovers`), then registrations
    of the pending shipments the packer drain left queued."""
    process = env.service("shipper")
    try:
        return _watch(env, process, "shipper", wanted, empty_outbox=False, timeout_s=600)
    finally:
        process.stop()


def omnitron_publisher(env: Environment, omnitron_url: str, wanted: int) -> Drain:
    process = env.service("omnitron-publisher", OMS_OMNITRON_URL=omnitron_url, OMS_OMNITRON_TOKEN=OMNITRON_TOKEN)
    try:
        return _watch(env, process, "omnitron-publisher", wanted, empty_outbox=False, timeout_s=600)
    finally:
        process.stop()


def _status_event(n: int) -> tuple[str, bytes]:
    event_id = str(uuid.uuid4())
    body = {
        "specversion": "1.0",
        "id": event_id,
        "source": "/oms-shipments/tracker",
        "type": "ShipmentStatusChanged",
        "time": "2026-11-27T12:30:00Z",
        "subject": f"RELAY-{n}",
        "datacontenttype": "application/json",
        "data": {
            "shipment_id": str(uuid.uuid4()),
            "package_id": f"RELAY-{n}",
            "order_number": f"ORD-R-{n}",
            "carrier": "sandbox",
            "tracking_number": f"SBX{n:09d}",
            "tracking_url": f"https://track.example/SBX{n:09d}",
            "previous_status": "shipped",
            "status": "delivered",
            "carrier_status": "DELIVERED",
            "sequence": 4,
            "changed_at": "2026-11-27T12:30:01Z",
            "order_item_ids": [n],
        },
    }
    return event_id, json.dumps(body, separators=(",", ":")).encode()


def relay(env: Environment, count: int) -> Drain:
    """Stored events → confirmed publishes, by the relay of one otherwise idle process."""
    env.purge(*(naming.work_queue(s) for s in ("packer", "shipper", "omnitron-publisher")))
    now = datetime.now(timezone.utc)
    with psycopg.connect(env.database_url) as db:
        with db.cursor().copy("COPY outbox (event_id, event_type, routing_key, body, created_at) FROM STDIN") as copy:
            for n in range(count):
                event_id, body = _status_event(n)
                # Routed to the Omnitron publisher's durable queue only: persisted once, as a raw publish.
                copy.write_row((event_id, "ShipmentStatusChanged", "shipment.status_changed.delivered", body, now))
    process = env.service("packer")
    try:
        with psycopg.connect(env.database_url, autocommit=True) as db:

            def stored() -> int:
                return db.execute("SELECT count(*) FROM outbox").fetchone()[0]

            # Timed from the first round's commit: start-up and that round left out.
            wait_for(lambda: stored() < count, 120, "the relay's first round", 0.01, processes=[process])
            started, left, cpu_started = time.monotonic(), stored(), process.cpu_s()
            wait_for(lambda: stored() == 0, 600, "the outbox to empty", 0.02, processes=[process])
            seconds, cpu = time.monotonic() - started, process.cpu_s() - cpu_started
        queued = env.queue_depth(naming.work_queue("omnitron-publisher"))
        if queued != count:
            raise RuntimeError(f"the relay confirmed {count} events but {queued} are queued")
        return Drain(left, seconds, process.peak_rss_kb(), cpu)
    finally:
        process.stop()
        env.purge(naming.work_queue("omnitron-publisher"))
