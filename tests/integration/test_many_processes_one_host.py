"""Several copies of every service on one host, configured with nothing but the README's variables.

Other test runs on this machine hold ports of their own from 9100 up, so nothing here
assumes any port is free: each process takes the first free one from 9100 and its first
log line says which, as an operator would read it.
"""

from __future__ import annotations

import os

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from events import package_packed, package_shipped, to_bytes
from harness import wait_until

RUN_COMMANDS = ("packer", "shipper", "tracker", "omnitron-publisher", "all")
COPIES = 4
README_VARIABLES = ("OMS_AMQP_URL", "OMS_DATABASE_URL", "OMS_OMNITRON_URL", "OMS_OMNITRON_TOKEN", "OMS_CARRIERS_FILE")
DEFAULT_PORT = 9100
DELIVERED = [("extra", "pending"), ("extra", "registered"), ("bulk", "500"), ("bulk", "550")]
PACKAGES = 8


def _readme_environment(env: dict[str, str]) -> dict[str, str]:
    """The process environment without any OMS_* setting but the README's five."""
    plain = {key: value for key, value in os.environ.items() if not key.startswith("OMS_")}
    return {**plain, **{key: env[key] for key in README_VARIABLES}}


def _packed_acks(port: int) -> float:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "oms_messages_total"
        and sample.labels.get("event_type") == "PackagePacked"
        and sample.labels.get("outcome") == "ack"
    )


def _never_backwards(calls: list[tuple[str, str]]) -> bool:
    """Each call is a later step of the delivered path than the one before (a step may be skipped:
    a change that comes after a newer one was relayed is not sent; a step may be sent again)."""
    steps = [DELIVERED.index(call) for call in calls]
    return steps == sorted(steps)


@pytest.mark.timeout(900)
def test_every_run_command_started_four_times_on_one_host_with_the_readme_configuration_starts_and_works(pipeline):
    pipeline.env = _readme_environment(pipeline.env)
    pipeline.carrier.fate = lambda order_number: ["SHIPPING", "DELIVERED"]
    for command in RUN_COMMANDS:
        pipeline.start(command, COPIES)
    processes = pipeline.processes

    ports = [
        wait_until(process.metrics_port, 240, interval=0.5, message=f"the first log line of {process.log_path.name}")
        for process in processes
    ]
    assert len(set(ports)) == len(processes), f"each process must have a port of its own: {ports}"
    assert all(port >= DEFAULT_PORT for port in ports), f"the default port is {DEFAULT_PORT} and up: {ports}"
    for process, port in zip(processes, ports):
        assert process.alive(), f"{process.log_path.name} exited:\n{process.log_text()[-3000:]}"
        assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=10).status_code == 200
        ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=10)
        assert ready.status_code == 200, f"{process.log_path.name}: {ready.text}"

    for n in range(PACKAGES):
        for routing_key, event in (
            ("package.packed", package_packed(f"PKG-H{n}", f"ORD-H{n}", [81_000 + n])),
            ("package.shipped", package_shipped(f"PKG-H{n}")),
        ):
            pipeline.publisher.publish(routing_key, to_bytes(event), message_id=event["id"], event_type=event["type"])
    for n in range(PACKAGES):
        item = 81_000 + n
        wait_until(
            lambda item=item: pipeline.omnitron.calls_for_item(item)[-1:] == [("bulk", "550")],
            240,
            interval=0.5,
            message=f"item {item} delivered at Omnitron",
        )
        assert _never_backwards(pipeline.omnitron.calls_for_item(item)), pipeline.omnitron.calls_for_item(item)

    # Each port is its own process's registry: what the packers counted adds up to what was sent.
    assert sum(_packed_acks(port) for port in ports) == PACKAGES
    for process in processes:
        assert process.alive(), f"{process.log_path.name} exited:\n{process.log_text()[-3000:]}"
    for process in processes:
        assert process.terminate(timeout=120) == 0, process.log_text()[-3000:]
