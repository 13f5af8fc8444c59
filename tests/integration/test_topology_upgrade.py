"""A broker set up by the version before `oms.retry` takes the new topology as it is: the
old delay queues (dead-lettering to the default exchange) stand beside the new ones, and
a copy still waiting in one comes back to its work queue, as a fresh delivery."""

from __future__ import annotations

import os
import subprocess
import time

import pika

import harness


def _old_delay_queue(channel, service: str, delay_s: int) -> str:
    name = f"oms-shipments.{service}.retry.{delay_s}s"
    channel.queue_declare(
        name,
        durable=True,
        arguments={
            "x-message-ttl": delay_s * 1000,
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": f"oms-shipments.{service}",
        },
    )
    return name


def test_topology_declare_works_on_a_broker_the_previous_version_set_up_and_old_copies_still_come_back(
    amqp_url, database_url, tmp_path
):
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    channel = connection.channel()
    old = [_old_delay_queue(channel, "packer", delay) for delay in (1, 5, 30, 120, 600)]
    channel.queue_declare("oms-shipments.packer", durable=True)
    channel.basic_publish(
        "",
        old[0],
        b'{"waiting": "since before the upgrade"}',
        pika.BasicProperties(delivery_mode=2, headers={"x-oms-attempts": 3}),
    )

    carriers = harness.write_carriers_file(
        tmp_path / "carriers.toml",
        {"sandbox": {"url": "http://127.0.0.1:9", "username": "u", "password": "p", "api_version": "1"}},
    )
    result = subprocess.run(
        [str(harness.BIN), "topology", "declare"],
        capture_output=True,
        text=True,
        timeout=60,
        env={
            **os.environ,
            "OMS_AMQP_URL": amqp_url,
            "OMS_DATABASE_URL": database_url,
            "OMS_CARRIERS_FILE": str(carriers),
        },
    )
    assert result.returncode == 0, result.stderr

    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        method, _properties, body = channel.basic_get("oms-shipments.packer", auto_ack=True)
        if method is not None:
            break
        time.sleep(0.2)
    else:
        raise AssertionError("the copy in the old delay queue never came back to its work queue")
    assert body == b'{"waiting": "since before the upgrade"}'
    # Through the default exchange, not oms.retry: the consumer will not trust its x-oms- headers.
    assert method.exchange == ""
    for name in old:
        channel.queue_declare(name, passive=True)  # still there, for the operator to delete once empty
    connection.close()
