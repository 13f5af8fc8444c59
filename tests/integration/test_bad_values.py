"""Values the contract refuses (CONTRACT.md §2, "checked as strictly as they are typed") are
dead-lettered at once by running services, with a reason naming the field, and the workers go
on: never retried for an hour until the database refuses them too.

Published as a foreign system would: raw bytes with pika to ``oms.events``; the services run
as ``oms-shipments run …`` processes.
"""

from __future__ import annotations

import json
import time
import uuid

import psycopg

from shared import naming

from events import package_packed, package_shipped, to_bytes
from harness import wait_until

PACKER_DLQ = naming.dead_letter_queue("packer")
SHIPPER_DLQ = naming.dead_letter_queue("shipper")
# Well under the first retry's delay plus a second attempt: a retried message would show
# x-oms-attempts above 1; the deadline only bounds the wait on a loaded machine.
AT_ONCE_S = 20


def _packed(name: str, **changes) -> dict:
    event = package_packed(name, f"ORD-{name}", [7001, 7002])
    for path, value in changes.items():
        *parents, last = path.split("__")
        node = event["data"]
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node[key]
        node[int(last) if isinstance(node, list) else last] = value
    return event


# (what is wrong, the event, what the reason must say)
BAD_VALUES = [
    (
        "an order item id that is true",
        _packed("PKG-V1", items__0__order_item_id=True),
        "items.0.order_item_id: Input should be a valid integer",
    ),
    (
        "a quantity of 2.0",
        _packed("PKG-V2", items__1__quantity=2.0),
        "items.1.quantity: Input should be a valid integer",
    ),
    (
        "an order item id past 2^63-1",
        _packed("PKG-V3", items__0__order_item_id=2**63),
        "items.0.order_item_id: Input should be less than or equal to 9223372036854775807",
    ),
    (
        "an order item id twice",
        _packed("PKG-V4", items__1__order_item_id=7001),
        "items: Value error, order item id 7001 appears more than once",
    ),
    (
        "a package id longer than its column",
        _packed("PKG-V5", package_id="P" * 256),
        "package_id: String should have at most 255 characters",
    ),
    (
        "an address with U+0000",
        _packed("PKG-V6", destination__address_line="Istiklal\u0000 Cd. 1"),
        "destination.address_line: text holds U+0000",
    ),
    (
        "a name with a lone surrogate",
        _packed("PKG-V7", items__0__name="Sh\ud800irt"),
        "items.0.name: text holds a lone surrogate",
    ),
    (
        "a packing time as a Unix timestamp",
        _packed("PKG-V8", packed_at=1764237600),
        "packed_at: Value error, a time is an RFC 3339 date and time",
    ),
    (
        "an amount in exponent notation",
        _packed("PKG-V9", payment={"amount": "1e3", "currency": "TRY"}),
        "payment.amount: Value error, an amount as text is digits",
    ),
]


def _shipment_status(database_url: str, package_id: str) -> str | None:
    with psycopg.connect(database_url) as connection:
        row = connection.execute("SELECT status FROM shipments WHERE package_id = %s", (package_id,)).fetchone()
    return row[0] if row else None


def _dead_letters(pipeline, queue: str, count: int) -> dict[str, tuple]:
    wait_until(lambda: pipeline.publisher.queue_depth(queue) >= count, AT_ONCE_S, 0.05, f"{count} dead letters")
    return {properties.message_id: (properties, body) for properties, body in pipeline.publisher.get_all(queue)}


def test_bad_values_are_dead_lettered_at_once_with_a_reason_naming_the_field_and_the_packer_goes_on(pipeline):
    pipeline.start("packer")
    published = {}
    started = time.monotonic()
    for _problem, event, _ in BAD_VALUES:
        # json.dumps writes the lone surrogate as a \u escape, as foreign encoders do.
        body = json.dumps(event).encode()
        message_id = f"bad-value-{uuid.uuid4()}"
        pipeline.publisher.publish("package.packed", body, message_id=message_id)
        published[message_id] = body

    letters = _dead_letters(pipeline, PACKER_DLQ, len(BAD_VALUES))
    elapsed = time.monotonic() - started

    assert sorted(letters) == sorted(published)
    for (problem, _, says), message_id in zip(BAD_VALUES, published):
        properties, body = letters[message_id]
        headers = properties.headers
        assert body == published[message_id], problem
        assert headers[naming.HEADER_ATTEMPTS] == 1, f"{problem}: a refused value is never retried"
        assert headers[naming.HEADER_ERROR_CLASS] == "PermanentError", problem
        assert says in headers[naming.HEADER_ERROR_MESSAGE], f"{problem}: {headers[naming.HEADER_ERROR_MESSAGE]!r}"
    assert elapsed < AT_ONCE_S

    valid = package_packed("PKG-AFTER-BAD-VALUES", "ORD-AFTER-BAD-VALUES", [7003])
    pipeline.publisher.publish("package.packed", to_bytes(valid), message_id=valid["id"])
    wait_until(
        lambda: _shipment_status(pipeline.database_url, "PKG-AFTER-BAD-VALUES") == "pending",
        30,
        message="the valid package's shipment",
    )
    for _, event, _ in BAD_VALUES:
        assert _shipment_status(pipeline.database_url, event["data"]["package_id"]) is None
    assert pipeline.publisher.queue_depth(PACKER_DLQ) == 0
    assert all(process.alive() for process in pipeline.processes)
    assert "Traceback" not in pipeline.logs()


def _binary(event: dict) -> tuple[bytes, dict]:
    headers = {f"ce-{name}": value for name, value in event.items() if name not in ("data", "datacontenttype")}
    return json.dumps(event["data"]).encode(), headers


def test_binary_mode_messages_are_applied_and_refused_under_the_same_rules(pipeline):
    pipeline.start("packer")
    good = package_packed("PKG-BINARY-OK", "ORD-BINARY-OK", [7101])
    body, headers = _binary(good)
    pipeline.publisher.publish(
        "package.packed", body, message_id="binary-ok", content_type="application/json", headers=headers
    )
    bad_value = _packed("PKG-BINARY-BAD", items__0__quantity="2")
    bad_body, bad_headers = _binary(bad_value)
    pipeline.publisher.publish(
        "package.packed", bad_body, message_id="binary-bad-value", content_type="application/json", headers=bad_headers
    )
    # An AMQP timestamp where the contract wants a string: refused, never a crash.
    _, odd_headers = _binary(package_packed("PKG-BINARY-ODD", "ORD-BINARY-ODD", [7102]))
    odd_headers["ce-time"] = 1764237600
    pipeline.publisher.publish(
        "package.packed", body, message_id="binary-odd-header", content_type="application/json", headers=odd_headers
    )

    wait_until(
        lambda: _shipment_status(pipeline.database_url, "PKG-BINARY-OK") == "pending",
        30,
        message="the binary-mode package's shipment",
    )
    letters = _dead_letters(pipeline, PACKER_DLQ, 2)

    reasons = {
        message_id: properties.headers[naming.HEADER_ERROR_MESSAGE] for message_id, (properties, _) in letters.items()
    }
    assert "items.0.quantity: Input should be a valid integer" in reasons["binary-bad-value"]
    assert reasons["binary-odd-header"] == "header ce-time is an AMQP int, not a string"
    assert all(properties.headers[naming.HEADER_ATTEMPTS] == 1 for properties, _ in letters.values())
    assert all(process.alive() for process in pipeline.processes)


def test_an_event_under_another_types_routing_key_is_dead_lettered_by_the_service_that_takes_both(pipeline):
    pipeline.start("shipper")
    shipped = package_shipped("PKG-WRONG-KEY")
    pipeline.publisher.publish("shipment.status_changed.pending", to_bytes(shipped), message_id="wrong-key")

    letters = _dead_letters(pipeline, SHIPPER_DLQ, 1)

    properties, _ = letters["wrong-key"]
    assert properties.headers[naming.HEADER_ERROR_MESSAGE] == (
        "a PackageShipped event under routing key 'shipment.status_changed.pending', which is not its own: refused"
    )
    assert properties.headers[naming.HEADER_ATTEMPTS] == 1
    with psycopg.connect(pipeline.database_url) as connection:
        assert connection.execute("SELECT count(*) FROM packages WHERE package_id = 'PKG-WRONG-KEY'").fetchone()[0] == 0
