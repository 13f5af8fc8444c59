"""The broker and the database go away and come back: the services resume on their own.

These tests stop the shared RabbitMQ / PostgreSQL of this machine and always start them
again, whatever happens.
"""

from __future__ import annotations

import subprocess
import time

import harness
from events import package_packed, package_shipped, to_bytes
from harness import wait_until

EXPECTED = [("extra", "pending"), ("extra", "registered"), ("bulk", "500"), ("bulk", "550")]


def _publish(publisher, first: int, count: int, prefix: str) -> list[int]:
    items = []
    for n in range(first, first + count):
        item = 95_000 + n
        packed = package_packed(f"PKG-{prefix}{n}", f"ORD-{prefix}{n}", [item])
        shipped = package_shipped(f"PKG-{prefix}{n}")
        publisher.publish("package.packed", to_bytes(packed), message_id=packed["id"], event_type="PackagePacked")
        publisher.publish("package.shipped", to_bytes(shipped), message_id=shipped["id"], event_type="PackageShipped")
        items.append(item)
    return items


def _consumers(amqp_url: str) -> dict[str, int]:
    vhost = amqp_url.rsplit("/", 1)[1]
    out = harness.rabbitmqctl("list_queues", "-p", vhost, "--quiet", "--no-table-headers", "name", "consumers")
    return {name: int(count) for name, count in (line.split("\t")[:2] for line in out.splitlines() if "\t" in line)}


def _distinct_in_order(calls: list) -> list:
    """A call repeated back to back is at-least-once delivery at the HTTP boundary, not a regression."""
    return [call for i, call in enumerate(calls) if i == 0 or call != calls[i - 1]]


def _forward_to_the_end(calls: list) -> bool:
    """In EXPECTED's order, ending with its final call. An intermediate status may be skipped:
    a change retried during the outage can be overtaken by a newer one, and the contract
    says the older one is then not sent."""
    distinct = _distinct_in_order(calls)
    positions = [EXPECTED.index(call) if call in EXPECTED else -1 for call in distinct]
    return (
        bool(distinct) and -1 not in positions and positions == sorted(set(positions)) and distinct[-1] == EXPECTED[-1]
    )


def _all_relayed(omnitron, items) -> bool:
    return all(_forward_to_the_end(omnitron.calls_for_item(item)) for item in items)


def test_after_a_broker_restart_every_service_reconnects_consumes_again_and_loses_nothing(pipeline):
    pipeline.carrier.fate = lambda order_number: ["SHIPPING", "DELIVERED"]
    pipeline.start_all_services()
    items = _publish(pipeline.publisher, 0, 15, "B")
    wait_until(lambda: len(pipeline.omnitron.calls) >= 5, 60, message="the flow under way")
    try:
        harness.rabbitmqctl("stop_app")
        time.sleep(3)
    finally:
        harness.rabbitmqctl("start_app")
        harness.rabbitmqctl("await_startup")
    pipeline.publisher.close()
    pipeline.publisher = harness.RawPublisher(pipeline.amqp_url)
    items += _publish(pipeline.publisher, 15, 15, "B")

    wait_until(lambda: _all_relayed(pipeline.omnitron, items), 120, message="every package relayed after the restart")
    consumers = _consumers(pipeline.amqp_url)
    for service in ("packer", "shipper", "omnitron-publisher"):
        assert consumers[f"oms-shipments.{service}"] == 1, f"{service} consumes again"
    assert pipeline.logs().count("broker connection lost, reconnecting") >= 3
    assert all(p.alive() for p in pipeline.processes)


def _restart_postgres() -> None:
    cluster = subprocess.run(
        "pg_lsclusters -h | awk '{print $1; exit}'", shell=True, capture_output=True, text=True
    ).stdout.strip()
    try:
        subprocess.run(
            ["pg_ctlcluster", "--skip-systemctl-redirect", cluster, "main", "stop", "-m", "fast"],
            check=True,
            timeout=60,
        )
        time.sleep(2)
    finally:
        subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", cluster, "main", "start"], timeout=60)
    wait_until(
        lambda: subprocess.run(["pg_isready", "-h", "127.0.0.1", "-q"]).returncode == 0, 60, message="PostgreSQL back"
    )


def test_after_a_database_restart_the_services_resume_and_nothing_is_lost_or_applied_twice(pipeline_factory):
    # A carrier limit the tracker keeps reaching: its lane is reserving slots when the database goes.
    pipeline = pipeline_factory(max_requests_per_s=20)
    pipeline.carrier.fate = lambda order_number: ["SHIPPING", "DELIVERED"]
    pipeline.start_all_services()
    items = _publish(pipeline.publisher, 0, 15, "D")
    wait_until(lambda: len(pipeline.omnitron.calls) >= 5, 60, message="the flow under way")
    _restart_postgres()
    items += _publish(pipeline.publisher, 15, 15, "D")

    wait_until(lambda: _all_relayed(pipeline.omnitron, items), 180, message="every package relayed after the restart")
    time.sleep(1)
    repeated = 0
    for item in items:
        calls = pipeline.omnitron.calls_for_item(item)
        assert _forward_to_the_end(calls), (item, calls)
        repeated += len(calls) - len(_distinct_in_order(calls))
    assert repeated <= 2, "at most the calls in flight at the restart are repeated"
    assert all(p.alive() for p in pipeline.processes)
