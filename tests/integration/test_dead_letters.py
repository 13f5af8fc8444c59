"""``oms-shipments dlq``: dead letters from real failures, inspected, replayed and purged
by the CLI as an operator runs it, against the real RabbitMQ, PostgreSQL and services.

Where a test needs dead letters the services cannot make on demand (hours old, of
several error classes), it writes them into the packer's dead-letter queue exactly as
shared/disposal.py does — same properties, same headers — with no packer running, so
that what a replay sends to the work queue stays there to be looked at.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from datetime import datetime, timedelta, timezone

import pika
import pytest

from services.tools.dlq_model import (
    HEADER_PREVIOUS_ATTEMPTS,
    HEADER_PREVIOUS_ERROR_CLASS,
    HEADER_PREVIOUS_ERROR_MESSAGE,
    HEADER_PREVIOUS_LAST_FAILURE,
    HEADER_REPLAY_COUNT,
    HEADER_REPLAYED_AT,
)
from shared import naming

import harness
from events import package_packed, package_shipped, to_bytes
from harness import wait_until

PACKER_DLQ, PACKER_QUEUE = naming.dead_letter_queue("packer"), naming.work_queue("packer")
SHIPPER_DLQ, SHIPPER_QUEUE = naming.dead_letter_queue("shipper"), naming.work_queue("shipper")
PUBLISHER_DLQ = naming.dead_letter_queue("omnitron-publisher")
DELIVERED = [("extra", "pending"), ("extra", "registered"), ("bulk", "500"), ("bulk", "550")]
OLD, NEW = timedelta(hours=3), timedelta(minutes=1)

# (event type, package, error class, age): six dead letters, each selector picks a different few.
MIXED = [
    ("PackagePacked", "PKG-A", "PermanentError", OLD),
    ("PackageShipped", "PKG-B", "TransientError", NEW),
    ("PackagePacked", "PKG-C", "TransientError", OLD),
    ("PackageShipped", "PKG-A", "PermanentError", NEW),
    ("PackagePacked", "PKG-B", "PermanentError", NEW),
    ("PackageShipped", "PKG-C", "TransientError", OLD),
]


@pytest.fixture
def pipeline(pipeline):
    """Wide enough that the CLI's Rich tables never wrap a message id."""
    pipeline.env["COLUMNS"] = "250"
    return pipeline


def _event(event_type: str, package_id: str) -> dict:
    if event_type == "PackageShipped":
        return package_shipped(package_id)
    return package_packed(package_id, f"ORD-{package_id}", [1])


def _seed(pipeline, letters=MIXED) -> list[str]:
    """Writes dead letters into the packer's DLQ as the consumer would; their message ids, in order."""
    ids = []
    for n, (event_type, package_id, error_class, age) in enumerate(letters):
        event = _event(event_type, package_id)
        failed_at = (datetime.now(timezone.utc) - age).isoformat()
        pipeline.publisher.publish(
            PACKER_DLQ,
            to_bytes(event),
            exchange="",
            message_id=event["id"],
            headers={
                naming.HEADER_ATTEMPTS: 1 if error_class == "PermanentError" else 12,
                naming.HEADER_SERVICE: "packer",
                naming.HEADER_QUEUE: PACKER_QUEUE,
                naming.HEADER_ROUTING_KEY: "package.packed",
                naming.HEADER_ERROR_CLASS: error_class,
                naming.HEADER_ERROR_MESSAGE: f"failure number {n}",
                naming.HEADER_FIRST_FAILURE: failed_at,
                naming.HEADER_LAST_FAILURE: failed_at,
            },
        )
        ids.append(event["id"])
    return ids


def _peek(amqp_url: str, queue: str) -> list[tuple[pika.BasicProperties, bytes]]:
    """Every message of a queue, in order, handed back untouched (fetched unacked, channel closed)."""
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    try:
        channel = connection.channel()
        messages = []
        for _ in range(channel.queue_declare(queue, passive=True).method.message_count):
            method, properties, body = channel.basic_get(queue, auto_ack=False)
            if method is None:
                break
            messages.append((properties, body))
        channel.close()
        return messages
    finally:
        connection.close()


def _ids(amqp_url: str, queue: str) -> list[str]:
    return [properties.message_id for properties, _ in _peek(amqp_url, queue)]


def _dlq(pipeline, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    """``oms-shipments dlq …`` as a subprocess, whatever its exit code (pipeline.cli insists on 0)."""
    return subprocess.run(
        [str(harness.BIN), "dlq", *args], env=pipeline.env, input=stdin, capture_output=True, text=True, timeout=120
    )


def _show(pipeline, *args: str) -> list[dict]:
    return json.loads(pipeline.cli("dlq", "show", "--json", *args).stdout)


def test_list_and_show_read_the_dead_letters_without_taking_any_or_changing_their_order(pipeline):
    seeded = _seed(pipeline)

    listing = pipeline.cli("dlq", "list").stdout
    row = next(line for line in listing.splitlines() if PACKER_DLQ in line)
    assert " 6 " in row and "PermanentError × 3" in row and "TransientError × 3" in row
    assert "3h ago" in row, "the oldest is the one that failed three hours ago"
    everything = _show(pipeline)
    assert [letter["message_id"] for letter in everything] == seeded
    assert [letter["position"] for letter in everything] == list(range(6))
    first = everything[0]
    assert (
        first["event_type"],
        first["package_id"],
        first["error_class"],
        first["error_message"],
        first["attempts"],
    ) == ("PackagePacked", "PKG-A", "PermanentError", "failure number 0", 1)
    assert json.loads(first["body"])["id"] == seeded[0]
    page = _show(pipeline, "--queue", "packer", "--limit", "2", "--offset", "3")
    assert [letter["message_id"] for letter in page] == seeded[3:5]
    assert "failure number 4" in pipeline.cli("dlq", "show", "--queue", PACKER_DLQ, "--offset", "4").stdout

    assert _ids(pipeline.amqp_url, PACKER_DLQ) == seeded, "reading took or reordered a dead letter"


def test_a_dry_run_replay_moves_nothing_and_says_what_would_move(pipeline):
    seeded = _seed(pipeline)

    result = pipeline.cli("dlq", "replay", "--all", "--type", "PackageShipped", "--dry-run")

    assert f"{PACKER_DLQ}: would replay 3 to {PACKER_QUEUE}" in result.stdout
    assert all(message_id in result.stdout for message_id in seeded[1::2])
    assert _ids(pipeline.amqp_url, PACKER_DLQ) == seeded
    assert pipeline.publisher.queue_depth(PACKER_QUEUE) == 0


def test_each_selector_replays_only_the_matching_dead_letters_in_order_and_keeps_the_rest_in_theirs(pipeline):
    cases = [
        (["--type", "PackageShipped"], [1, 3, 5]),
        (["--error-class", "TransientError"], [1, 2, 5]),
        (["--package-id", "PKG-A"], [0, 3]),
        (["--older-than", "2h"], [0, 2, 5]),
        (["--newer-than", "10m"], [1, 3, 4]),
        (["--type", "PackagePacked", "--error-class", "PermanentError", "--newer-than", "1h"], [4]),
    ]
    for selector, chosen in cases:
        seeded = _seed(pipeline)

        pipeline.cli("dlq", "replay", "--queue", "packer", *selector)

        replayed = [seeded[n] for n in chosen]
        kept = [message_id for message_id in seeded if message_id not in replayed]
        assert _ids(pipeline.amqp_url, PACKER_QUEUE) == replayed, selector
        assert _ids(pipeline.amqp_url, PACKER_DLQ) == kept, selector
        pipeline.publisher.get_all(PACKER_QUEUE)
        pipeline.publisher.get_all(PACKER_DLQ)


def test_a_limited_replay_moves_the_first_ones_with_a_fresh_retry_count_and_their_previous_failure_kept(pipeline):
    seeded = _seed(pipeline)
    originals = {properties.message_id: (properties, body) for properties, body in _peek(pipeline.amqp_url, PACKER_DLQ)}

    pipeline.cli("dlq", "replay", "--all", "--error-class", "TransientError", "--limit", "2")

    replayed = _peek(pipeline.amqp_url, PACKER_QUEUE)
    assert [properties.message_id for properties, _ in replayed] == [seeded[1], seeded[2]]
    assert _ids(pipeline.amqp_url, PACKER_DLQ) == [seeded[0], *seeded[3:]]
    for properties, body in replayed:
        before, before_body = originals[properties.message_id]
        headers = properties.headers
        assert body == before_body
        assert (properties.content_type, properties.delivery_mode) == (before.content_type, 2)
        assert naming.HEADER_ATTEMPTS not in headers, "the retry count starts over"
        assert naming.HEADER_ERROR_CLASS not in headers and naming.HEADER_LAST_FAILURE not in headers
        assert headers[naming.HEADER_REPLAYED_FROM] == PACKER_DLQ
        assert headers[naming.HEADER_ROUTING_KEY] == "package.packed"
        assert headers[HEADER_PREVIOUS_ERROR_CLASS] == "TransientError"
        assert headers[HEADER_PREVIOUS_ERROR_MESSAGE] == before.headers[naming.HEADER_ERROR_MESSAGE]
        assert headers[HEADER_PREVIOUS_ATTEMPTS] == 12
        assert datetime.fromisoformat(headers[HEADER_PREVIOUS_LAST_FAILURE]) == datetime.fromisoformat(
            before.headers[naming.HEADER_LAST_FAILURE]
        )
        assert headers[HEADER_REPLAY_COUNT] == 1
        assert datetime.now(timezone.utc) - datetime.fromisoformat(headers[HEADER_REPLAYED_AT]) < timedelta(minutes=2)


def test_a_replay_at_a_given_rate_takes_as_long_as_that_rate_asks(pipeline):
    _seed(pipeline, MIXED + MIXED[:4])  # ten
    started = time.monotonic()

    pipeline.cli("dlq", "replay", "--all", "--rate", "5")

    elapsed = time.monotonic() - started
    stamps = [
        datetime.fromisoformat(properties.headers[HEADER_REPLAYED_AT])
        for properties, _ in _peek(pipeline.amqp_url, PACKER_QUEUE)
    ]
    assert len(stamps) == 10
    # Ten messages at five a second: nine intervals of 0.2 s between the first and the last.
    assert (stamps[-1] - stamps[0]).total_seconds() >= 1.6
    assert elapsed >= 1.6


def test_a_purge_answered_no_removes_nothing_and_a_confirmed_one_removes_only_the_selected(pipeline):
    seeded = _seed(pipeline)

    declined = _dlq(pipeline, "purge", "--all", "--error-class", "TransientError", stdin="n\n")
    assert declined.returncode != 0
    assert "Delete 3 dead letter(s) for good?" in declined.stderr
    assert _ids(pipeline.amqp_url, PACKER_DLQ) == seeded

    confirmed = _dlq(pipeline, "purge", "--all", "--error-class", "TransientError", stdin="y\n")
    assert confirmed.returncode == 0, confirmed.stderr
    assert _ids(pipeline.amqp_url, PACKER_DLQ) == [seeded[0], seeded[3], seeded[4]]

    pipeline.cli("dlq", "purge", "--queue", "packer", "--package-id", "PKG-B", "--yes")
    assert _ids(pipeline.amqp_url, PACKER_DLQ) == [seeded[0], seeded[3]]
    assert pipeline.publisher.queue_depth(PACKER_QUEUE) == 0, "a purge never replays"


def _send_package(pipeline, package_id: str, order_number: str, item_id: int) -> None:
    for routing_key, event in (
        ("package.packed", package_packed(package_id, order_number, [item_id])),
        ("package.shipped", package_shipped(package_id)),
    ):
        pipeline.publisher.publish(routing_key, to_bytes(event), message_id=event["id"], event_type=event["type"])


def test_a_carrier_rejection_and_an_omnitron_refusal_are_dead_lettered_with_their_reasons_and_complete_once_replayed(
    pipeline,
):
    pipeline.carrier.fate = lambda order_number: ["SHIPPING", "DELIVERED"]
    pipeline.omnitron.reject_item_ids = {7002}
    pipeline.start_all_services()
    _send_package(pipeline, "PKG-REJECTED", "REJECT-0001", 7001)
    _send_package(pipeline, "PKG-REFUSED", "ORD-0002", 7002)

    wait_until(lambda: pipeline.publisher.queue_depth(SHIPPER_DLQ) == 1, 60, message="the carrier's rejection")
    # Every status of the refused item is refused in turn, up to the final one.
    wait_until(lambda: pipeline.publisher.queue_depth(PUBLISHER_DLQ) == 4, 60, message="Omnitron's four refusals")
    (rejected,) = _show(pipeline, "--queue", "shipper")
    assert rejected["package_id"] == "PKG-REJECTED" and rejected["error_class"] == "PermanentError"
    assert "HTTP 400" in rejected["error_message"]
    assert "order REJECT-0001: destination district is not served" in rejected["error_message"]
    refused = _show(pipeline, "--queue", "omnitron-publisher")
    assert [json.loads(letter["body"])["data"]["status"] for letter in refused] == [
        "pending",
        "registered",
        "shipped",
        "delivered",
    ]
    for letter in refused:
        assert letter["attempts"] == 1
        assert "Order item 7002 cannot be updated: its order is closed." in letter["error_message"]

    pipeline.carrier.rejecting = False
    pipeline.omnitron.reject_item_ids = set()
    result = pipeline.cli("dlq", "replay", "--all")

    assert f"{SHIPPER_DLQ}: replayed 1 to {SHIPPER_QUEUE}" in result.stdout
    wait_until(
        lambda: pipeline.omnitron.calls_for_item(7001) == DELIVERED, 60, message="the rejected package delivered"
    )
    # Replayed in their order, each status reaches Omnitron; none is skipped as stale.
    wait_until(lambda: pipeline.omnitron.calls_for_item(7002) == DELIVERED, 60, message="the refused item's statuses")
    assert [pipeline.publisher.queue_depth(q) for q in (PACKER_DLQ, SHIPPER_DLQ, PUBLISHER_DLQ)] == [0, 0, 0]
    assert "Traceback" not in pipeline.logs()


def test_killing_a_replay_midway_loses_no_dead_letter_and_replaying_the_rest_completes_every_package(pipeline):
    pipeline.carrier.fate = lambda order_number: ["SHIPPING", "DELIVERED"]
    pipeline.start_all_services()
    packages = [(f"PKG-K{n:03d}", f"REJECT-K{n:03d}", 8000 + n) for n in range(60)]
    for package in packages:
        _send_package(pipeline, *package)
    wait_until(lambda: pipeline.publisher.queue_depth(SHIPPER_DLQ) == 60, 90, message="sixty rejected registrations")
    dead_letters = set(_ids(pipeline.amqp_url, SHIPPER_DLQ))
    shipper = next(p for p in pipeline.processes if p.service == "shipper")
    assert shipper.terminate() == 0  # the work queue then shows exactly what the replay delivered
    pipeline.carrier.rejecting = False

    log = open(pipeline.tmp_path / "replay.log", "wb")
    replay = subprocess.Popen(
        [str(harness.BIN), "dlq", "replay", "--all", "--rate", "20"],
        env=pipeline.env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    wait_until(lambda: pipeline.publisher.queue_depth(SHIPPER_QUEUE) >= 1, 30, 0.02, "the replay under way")
    time.sleep(1.0)
    replay.send_signal(signal.SIGKILL)
    replay.wait(10)
    log.close()

    def replayed() -> list[str]:
        return [
            properties.message_id
            for properties, _ in _peek(pipeline.amqp_url, SHIPPER_QUEUE)
            if naming.HEADER_REPLAYED_FROM in (properties.headers or {})
        ]

    # What the killed replay held unacked goes back once the broker sees its connection gone.
    wait_until(
        lambda: len(_ids(pipeline.amqp_url, SHIPPER_DLQ)) + len(replayed()) >= 60,
        30,
        message="every dead letter back or delivered",
    )
    still_dead, delivered = _ids(pipeline.amqp_url, SHIPPER_DLQ), replayed()
    assert 0 < len(delivered) < 60 and still_dead, "the replay was killed midway"
    assert len(still_dead) + len(delivered) >= 60
    assert set(still_dead) | set(delivered) == dead_letters, "no message id may go missing"
    assert len(set(still_dead) & set(delivered)) <= 1, (
        "only the one in flight at the kill may be both delivered and still dead-lettered"
    )

    pipeline.start("shipper")
    pipeline.cli("dlq", "replay", "--all")
    for _, _, item_id in packages:
        wait_until(
            lambda item_id=item_id: pipeline.omnitron.calls_for_item(item_id) == DELIVERED,
            120,
            message=f"item {item_id} delivered",
        )
    assert pipeline.publisher.queue_depth(SHIPPER_DLQ) == 0
