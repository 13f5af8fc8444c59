"""Bytes the contract rejects go straight to the packer's dead-letter queue with their reason,
and the packer goes on consuming (CONTRACT.md §2).

Everything is published as a foreign system would: raw bytes with pika to ``oms.events``
under ``package.packed``; the packer runs as an ``oms-shipments run packer`` process.
"""

from __future__ import annotations

import json
import uuid

import psycopg
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from contracts import EventRejected, parse_event
from shared import naming
from shared.redaction import redact_text

from events import package_packed, package_shipped, to_bytes
from harness import wait_until

PACKER_DLQ = naming.dead_letter_queue("packer")
CLOUDEVENTS = "application/cloudevents+json"


def _valid(package_id: str = "PKG-BAD-1") -> dict:
    return package_packed(package_id, "ORD-BAD-1", [4242])


def _without(path: str) -> bytes:
    event = _valid()
    *parents, last = path.split(".")
    node = event
    for key in parents:
        node = node[key]
    del node[last]
    return to_bytes(event)


def _with(path: str, value) -> bytes:
    event = _valid()
    *parents, last = path.split(".")
    node = event
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node[key]
    node[last] = value
    return to_bytes(event)


def _oversized() -> bytes:
    event = _valid()
    event["data"]["delivery_note"] = "x" * (1024 * 1024)
    return to_bytes(event)


# (what is wrong, body, content type, what the reason header must say)
BAD_INPUT = [
    ("not JSON at all", b"package PKG-1 is packed", CLOUDEVENTS, ["body is not JSON"]),
    ("truncated JSON", to_bytes(_valid())[:-25], CLOUDEVENTS, ["body is not JSON"]),
    ("a JSON array", b'[{"type": "PackagePacked"}]', CLOUDEVENTS, ["body is not a JSON object"]),
    ("an envelope without its id", _without("id"), CLOUDEVENTS, ["invalid CloudEvents envelope", "id"]),
    (
        "data without its order number",
        _without("data.order_number"),
        CLOUDEVENTS,
        ["invalid PackagePacked data", "order_number"],
    ),
    (
        "items that are not a list",
        _with("data.items", "two shirts"),
        CLOUDEVENTS,
        ["invalid PackagePacked data", "items"],
    ),
    (
        "a quantity that is not a number",
        _with("data.items.0.quantity", "two"),
        CLOUDEVENTS,
        ["invalid PackagePacked data", "items.0.quantity"],
    ),
    (
        "an unknown event type",
        _with("type", "PackageTeleported"),
        CLOUDEVENTS,
        ["unknown event type 'PackageTeleported'"],
    ),
    ("a body over 1 MiB", _oversized(), CLOUDEVENTS, ["exceeds the 1048576-byte limit"]),
    ("a text/plain content type", to_bytes(_valid()), "text/plain", ["unsupported content type 'text/plain'"]),
]


def _shipment_status(database_url: str, package_id: str) -> str | None:
    with psycopg.connect(database_url) as connection:
        row = connection.execute("SELECT status FROM shipments WHERE package_id = %s", (package_id,)).fetchone()
    return row[0] if row else None


def _take_dead_letter(pipeline, message_id: str):
    wait_until(lambda: pipeline.publisher.queue_depth(PACKER_DLQ) >= 1, 20, 0.05, f"dead letter {message_id}")
    letters = pipeline.publisher.get_all(PACKER_DLQ)
    assert [properties.message_id for properties, _ in letters] == [message_id]
    return letters[0]


def test_every_kind_of_bad_body_is_dead_lettered_at_once_with_a_reason_naming_its_problem_and_the_packer_goes_on(
    pipeline,
):
    pipeline.start("packer")
    for problem, body, content_type, reason_says in BAD_INPUT:
        message_id = f"bad-{uuid.uuid4()}"
        pipeline.publisher.publish("package.packed", body, message_id=message_id, content_type=content_type)

        properties, dead_body = _take_dead_letter(pipeline, message_id)
        headers = properties.headers
        assert dead_body == body, problem
        assert properties.content_type == content_type, problem
        assert headers[naming.HEADER_ATTEMPTS] == 1, f"{problem}: bad input is never retried"
        assert headers[naming.HEADER_ERROR_CLASS] == "PermanentError", problem
        assert headers[naming.HEADER_SERVICE] == "packer", problem
        assert headers[naming.HEADER_ROUTING_KEY] == "package.packed", problem
        for words in reason_says:
            assert words in headers[naming.HEADER_ERROR_MESSAGE], f"{problem}: {headers[naming.HEADER_ERROR_MESSAGE]!r}"

    valid = _valid("PKG-AFTER-BAD")
    pipeline.publisher.publish("package.packed", to_bytes(valid), message_id=valid["id"])
    wait_until(
        lambda: _shipment_status(pipeline.database_url, "PKG-AFTER-BAD") == "pending",
        20,
        message="the valid package's shipment",
    )
    assert pipeline.publisher.queue_depth(PACKER_DLQ) == 0


def test_a_plain_application_json_content_type_is_accepted(pipeline):
    pipeline.start("packer")
    event = _valid("PKG-PLAIN-JSON")
    pipeline.publisher.publish(
        "package.packed", to_bytes(event), message_id=event["id"], content_type="application/json"
    )

    wait_until(
        lambda: _shipment_status(pipeline.database_url, "PKG-PLAIN-JSON") == "pending",
        20,
        message="the shipment of the application/json package",
    )
    assert pipeline.publisher.queue_depth(PACKER_DLQ) == 0


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=12,
)
_envelopes = st.fixed_dictionaries(
    {
        "specversion": st.sampled_from(["1.0", "0.3", 1]),
        "id": st.text(max_size=8) | st.integers(),
        "source": st.text(max_size=8),
        "type": st.sampled_from(["PackagePacked", "PackageShipped"]) | st.text(max_size=12),
        "data": _json,
    },
    optional={"time": st.text(max_size=25), "subject": _json},
)
_bodies = st.one_of(
    st.binary(max_size=300),
    st.text(max_size=200).map(str.encode),
    _json.map(lambda value: json.dumps(value).encode()),
    _envelopes.map(lambda value: json.dumps(value).encode()),
)
_content_types = st.sampled_from(
    [CLOUDEVENTS, "application/json", "application/cloudevents+json; charset=utf-8", "text/plain", "application/xml"]
)


def test_random_bodies_all_land_in_the_dead_letter_queue_with_their_reason_and_a_valid_package_still_completes(
    pipeline,
):
    pipeline.carrier.fate = lambda order_number: ["SHIPPING", "DELIVERED"]
    pipeline.start_all_services()

    @settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(body=_bodies, content_type=_content_types)
    def lands_in_the_dead_letter_queue(body: bytes, content_type: str):
        try:
            event = parse_event(body, content_type)
            expected = None
        except EventRejected as exc:
            event, expected = None, exc.reason
        # A body that happens to be a valid PackagePacked is not bad input.
        assume(event is None or event.type != "PackagePacked")
        message_id = f"random-{uuid.uuid4()}"
        pipeline.publisher.publish("package.packed", body, message_id=message_id, content_type=content_type)

        properties, dead_body = _take_dead_letter(pipeline, message_id)
        reason = properties.headers[naming.HEADER_ERROR_MESSAGE]
        assert dead_body == body
        assert properties.headers[naming.HEADER_ATTEMPTS] == 1
        assert properties.headers[naming.HEADER_ERROR_CLASS] == "PermanentError"
        if expected is not None:
            assert reason == redact_text(expected)[:1000]
        else:  # a valid event of a type the packer does not take
            assert f"{event.type} events are not handled by this queue" in reason

    lands_in_the_dead_letter_queue()

    packed, shipped = (
        package_packed("PKG-AFTER-RANDOM", "ORD-AFTER-RANDOM", [4343]),
        package_shipped("PKG-AFTER-RANDOM"),
    )
    pipeline.publisher.publish("package.packed", to_bytes(packed), message_id=packed["id"])
    pipeline.publisher.publish("package.shipped", to_bytes(shipped), message_id=shipped["id"])
    wait_until(
        lambda: pipeline.omnitron.calls_for_item(4343)[-1:] == [("bulk", "550")],
        60,
        message="the valid package delivered in Omnitron",
    )
    assert pipeline.publisher.queue_depth(PACKER_DLQ) == 0
    assert "Traceback" not in pipeline.logs()
