"""No secret reaches a log line or the command line's output, failures and dead letters included.

The broker password "guest" is too short to look for, so the services here connect as a
RabbitMQ user of their own with a long password, made for this test and deleted after it.
"""

from __future__ import annotations

import base64
import subprocess
import tomllib
import uuid
from urllib.parse import urlsplit

import pytest

from shared import naming

import harness
from events import package_packed, package_shipped, to_bytes
from harness import wait_until

DELIVERED = [("extra", "pending"), ("extra", "registered"), ("bulk", "500"), ("bulk", "550")]


@pytest.fixture
def broker_user(amqp_url):
    """(user, password) of a RabbitMQ user allowed on the test's vhost only."""
    user, password = f"oms-secrets-{uuid.uuid4().hex[:8]}", f"amqp-pa55word-{uuid.uuid4().hex}-do-not-log"
    vhost = urlsplit(amqp_url).path.lstrip("/")
    harness.rabbitmqctl("add_user", user, password)
    try:
        harness.rabbitmqctl("set_permissions", "-p", vhost, user, ".*", ".*", ".*")
        yield user, password
    finally:
        harness.rabbitmqctl("delete_user", user)


def test_no_password_or_token_appears_in_any_log_or_command_output_even_on_failure_paths(pipeline, broker_user):
    user, password = broker_user
    carriers = tomllib.loads((pipeline.tmp_path / "carriers.toml").read_text())["carriers"]
    carrier_password, omnitron_token = carriers["sandbox"]["password"], pipeline.env["OMS_OMNITRON_TOKEN"]
    vhost = urlsplit(pipeline.amqp_url).path.lstrip("/")
    pipeline.env["OMS_AMQP_URL"] = f"amqp://{user}:{password}@{harness.RABBIT_HOST}:{harness.RABBIT_PORT}/{vhost}"
    pipeline.env["OMS_LOG_LEVEL"] = "DEBUG"  # the most a deployment could ever log
    pipeline.carrier.fate = lambda order_number: ["SHIPPING", "DELIVERED"]
    pipeline.carrier.fail_next(3)  # the first registration meets carrier 500s and is retried
    outputs: list[str] = []

    def cli(*args: str) -> None:
        result = pipeline.cli(*args)
        outputs.extend([result.stdout, result.stderr])

    pipeline.start_all_services()
    for package_id, order_number, item_id in (("PKG-S1", "ORD-S1", 9001), ("PKG-S2", "REJECT-S2", 9002)):
        for routing_key, event in (
            ("package.packed", package_packed(package_id, order_number, [item_id])),
            ("package.shipped", package_shipped(package_id)),
        ):
            pipeline.publisher.publish(routing_key, to_bytes(event), message_id=event["id"], event_type=event["type"])
    pipeline.publisher.publish("package.packed", b"not json", message_id="bad-bytes")

    wait_until(lambda: pipeline.omnitron.calls_for_item(9001) == DELIVERED, 60, message="the first package delivered")
    wait_until(
        lambda: pipeline.publisher.queue_depth(naming.dead_letter_queue("shipper")) == 1,
        60,
        message="the rejected registration dead-lettered",
    )
    connections = harness.rabbitmqctl("list_connections", "user", "vhost")
    assert user in connections, "the services must be connected as the test's own broker user"
    cli("topology", "declare")
    cli("dlq", "list")
    cli("dlq", "show", "--json")
    cli("dlq", "show")
    pipeline.carrier.rejecting = False
    cli("dlq", "replay", "--all", "--type", "ShipmentStatusChanged")
    wait_until(
        lambda: pipeline.omnitron.calls_for_item(9002) == DELIVERED, 60, message="the replayed package delivered"
    )
    failed_cli = subprocess.run(
        [str(harness.BIN), "dlq", "list"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**pipeline.env, "OMS_AMQP_URL": pipeline.env["OMS_AMQP_URL"].replace("@", "x@")},
    )
    assert failed_cli.returncode != 0  # a wrong password: the error must not echo the URL either
    outputs.extend([failed_cli.stdout, failed_cli.stderr])
    for process in pipeline.processes:
        process.terminate()

    logs = pipeline.logs()
    assert "will retry" in logs and "message dead-lettered" in logs, "the failure paths must have run"
    everything = logs + "\n".join(outputs)
    basic_auth = base64.b64encode(f"user:{carrier_password}".encode()).decode()
    for name, secret in (
        ("AMQP password", password),
        ("carrier password", carrier_password),
        ("carrier Basic credentials", basic_auth),
        ("Omnitron token", omnitron_token),
    ):
        assert secret not in everything, f"the {name} leaked"
