"""What a message carries besides its body is untrusted too (CONTRACT.md §1): our own
``x-oms-`` headers count only on a delivery through ``oms.retry``, no header of any type
or value stops a worker, a body in another encoding than UTF-8 is dead-lettered
undecoded, a message without a content type stays replayable, and a retry copy whose
queue is gone is never lost.

Everything is published with pika as raw bytes into running ``oms-shipments run …``
processes, beside normal packages; each test ends with the services alive, every queue
empty and nothing left unacknowledged.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import uuid
from datetime import datetime
from decimal import Decimal

import pika
import psycopg
import pytest
from kombu import Queue

from shared import naming
from shared.broker import Publisher, Unroutable, connect, events_exchange

import harness
from events import package_packed, package_shipped, to_bytes
from harness import wait_until

PACKER_QUEUE, PACKER_DLQ = naming.work_queue("packer"), naming.dead_letter_queue("packer")
PUBLISHER_DLQ = naming.dead_letter_queue("omnitron-publisher")
FAR_FUTURE = datetime(2099, 1, 1)

# Headers an upstream system might set, our own names among them, in every AMQP type.
HOSTILE_HEADERS = [
    {"x-oms-not-before": "2099-01-01T00:00:00"},  # naive: the TypeError of issue #10
    {"x-oms-not-before": FAR_FUTURE},  # an AMQP timestamp
    {"x-oms-not-before": {"at": "2099-01-01T00:00:00Z", "nested": {"list": [1, "two", None]}}},
    {"x-oms-not-before": "9999-12-31T23:59:59-23:59"},  # past the calendar's end in UTC
    {"x-oms-not-before": "NaN"},
    {"x-oms-not-before": Decimal("-0.5"), "x-oms-attempts": "inf"},
    {"x-oms-not-before": 2**62, "x-oms-attempts": -(2**62)},
    {"x-oms-not-before": b"\xff\xfe not text", "x-oms-attempts": b"\xff"},
    {"x-oms-not-before": ["2099-01-01T00:00:00Z"], "x-oms-attempts": [999]},
    {"x-oms-not-before": None, "x-oms-attempts": None},
    {"x-oms-not-before": True, "x-oms-attempts": True},
    {"x-oms-attempts": 999},
    {"x-oms-attempts": {"count": 999}},
    {"x-oms-attempts": "9" * 5000},
    {"x-oms-attempts": Decimal("12.5"), "X-OMS-ATTEMPTS": 999, "x-oms-error-class": {"forged": True}},
    {"x-oms-first-failure-at": FAR_FUTURE, "x-oms-original-routing-key": ["not", "text"]},
    {"x-death": "forged", "x-custom": {"when": FAR_FUTURE, "many": list(range(50))}, "x-empty": ""},
]


def _vhost(pipeline) -> str:
    return pipeline.amqp_url.rsplit("/", 1)[1]


def _status(database_url: str, package_id: str) -> str | None:
    with psycopg.connect(database_url) as connection:
        row = connection.execute("SELECT status FROM shipments WHERE package_id = %s", (package_id,)).fetchone()
    return row[0] if row else None


def _unacknowledged(pipeline) -> dict[str, tuple[int, int]]:
    """Every queue of the vhost: (ready, unacknowledged)."""
    out = harness.rabbitmqctl(
        "list_queues",
        "-p",
        _vhost(pipeline),
        "--quiet",
        "--no-table-headers",
        "name",
        "messages_ready",
        "messages_unacknowledged",
    )
    queues = {}
    for line in out.splitlines():
        name, ready, unacked = line.split("\t")
        queues[name] = (int(ready), int(unacked))
    return queues


def _settled(pipeline) -> bool:
    """Nothing unacknowledged anywhere, nothing waiting in the queue of a running service."""
    running = {naming.work_queue(process.service) for process in pipeline.processes if process.alive()}
    queues = _unacknowledged(pipeline)
    return all(unacked == 0 for _, unacked in queues.values()) and all(
        queues[name] == (0, 0) for name in running & set(queues)
    )


class RawChannel:
    """pika with every property a foreign publisher may set (content_encoding too)."""

    def __init__(self, url: str):
        self.connection = pika.BlockingConnection(pika.URLParameters(url))
        self.channel = self.connection.channel()
        self.channel.confirm_delivery()

    def publish(
        self,
        routing_key: str,
        body: bytes,
        *,
        exchange: str = naming.EVENTS_EXCHANGE,
        message_id: str | None = None,
        content_type: str | None = "application/cloudevents+json",
        content_encoding: str | None = None,
        headers: dict | None = None,
    ) -> None:
        self.channel.basic_publish(
            exchange,
            routing_key,
            body,
            pika.BasicProperties(
                delivery_mode=2,
                content_type=content_type,
                content_encoding=content_encoding,
                message_id=message_id,
                headers=headers,
            ),
            mandatory=True,
        )

    def take_all(self, queue: str) -> dict[str, tuple[pika.BasicProperties, bytes]]:
        messages = {}
        while True:
            method, properties, body = self.channel.basic_get(queue, auto_ack=True)
            if method is None:
                return messages
            messages[properties.message_id] = (properties, body)

    def close(self) -> None:
        self.connection.close()


@pytest.fixture
def raw(pipeline):
    channel = RawChannel(pipeline.amqp_url)
    yield channel
    channel.close()


_item_ids = itertools.count(70_001)


def _packed(package_id: str) -> tuple[str, bytes]:
    event = package_packed(package_id, f"ORD-{package_id}", [next(_item_ids)])
    return event["id"], to_bytes(event)


def _publish_packages(raw, prefix: str, headers_list: list[dict], exchange: str = naming.EVENTS_EXCHANGE) -> list[str]:
    routing_key = "package.packed" if exchange == naming.EVENTS_EXCHANGE else PACKER_QUEUE
    packages = []
    for n, headers in enumerate(headers_list):
        package_id = f"PKG-{prefix}-{n:02d}"
        message_id, body = _packed(package_id)
        raw.publish(routing_key, body, exchange=exchange, message_id=message_id, headers=headers)
        packages.append(package_id)
    return packages


def _all_pending(pipeline, packages: list[str]) -> bool:
    return all(_status(pipeline.database_url, package_id) == "pending" for package_id in packages)


def test_our_own_headers_of_every_type_from_outside_are_ignored_and_every_such_package_is_applied(pipeline, raw):
    (packer,) = pipeline.start("packer")
    before = _publish_packages(raw, "NORMAL-A", [{}] * 3)
    hostile = _publish_packages(raw, "HOSTILE", HOSTILE_HEADERS)
    after = _publish_packages(raw, "NORMAL-B", [{}] * 3)

    wait_until(lambda: _all_pending(pipeline, before + hostile + after), 60, message="every package applied")
    wait_until(lambda: _settled(pipeline), 30, message="every queue empty, nothing unacknowledged")
    assert packer.alive(), packer.log_text()[-3000:]
    assert "waiting out the requested delay" not in packer.log_text(), "an outside not-before was read"


def test_a_fresh_message_claiming_999_attempts_is_judged_as_a_first_attempt_and_its_forged_headers_are_not_copied(
    pipeline, raw
):
    pipeline.start("packer")
    message_id = f"forged-{uuid.uuid4()}"
    raw.publish(
        "package.packed",
        b"not json",
        message_id=message_id,
        headers={
            "x-oms-attempts": 999,
            "x-oms-not-before": "2099-01-01T00:00:00",
            "x-oms-forged": "yes",
            "x-oms-first-failure-at": "2001-01-01T00:00:00+00:00",
            "x-upstream-trace": "kept",
        },
    )

    wait_until(
        lambda: raw.channel.queue_declare(PACKER_DLQ, passive=True).method.message_count == 1,
        30,
        message="the bad body dead-lettered",
    )
    ((properties, _),) = raw.take_all(PACKER_DLQ).values()
    headers = properties.headers
    assert headers[naming.HEADER_ATTEMPTS] == 1, "the outside count was read"
    assert "x-oms-forged" not in headers and naming.HEADER_NOT_BEFORE not in headers
    assert headers[naming.HEADER_FIRST_FAILURE] != "2001-01-01T00:00:00+00:00"
    assert headers["x-upstream-trace"] == "kept", "headers not ours go along"
    assert "body is not JSON" in headers[naming.HEADER_ERROR_MESSAGE]


def test_through_oms_retry_our_headers_count_but_no_value_stops_the_worker_or_parks_a_message_past_the_bound(
    pipeline_factory,
):
    pipeline = pipeline_factory(extra_env={"OMS_MAX_RETRY_AFTER_S": "2"})
    raw = RawChannel(pipeline.amqp_url)
    try:
        (packer,) = pipeline.start("packer")
        trusted = _publish_packages(raw, "TRUSTED", HOSTILE_HEADERS, exchange=naming.RETRY_EXCHANGE)
        normal = _publish_packages(raw, "NORMAL-C", [{}] * 3)

        # A far-future not-before holds a message back at most OMS_MAX_RETRY_AFTER_S (2 s) and one tier.
        wait_until(lambda: _all_pending(pipeline, trusted + normal), 30, message="every package applied")
        wait_until(lambda: _settled(pipeline), 30, message="every queue empty, nothing unacknowledged")
        assert packer.alive(), packer.log_text()[-3000:]
        log = packer.log_text()
        assert "a not-before beyond the longest wait allowed is cut to it" in log, "the trusted not-before was read"
    finally:
        raw.close()


@pytest.mark.parametrize("content_encoding", [None, "utf-8", "UTF-8", "binary", "Binary"])
def test_a_body_marked_utf_8_or_binary_in_any_case_or_not_marked_is_read(pipeline, raw, content_encoding):
    pipeline.start("packer")
    message_id, body = _packed(f"PKG-ENC-{content_encoding}")
    raw.publish("package.packed", body, message_id=message_id, content_encoding=content_encoding)

    wait_until(
        lambda: _status(pipeline.database_url, f"PKG-ENC-{content_encoding}") == "pending",
        30,
        message="the package applied",
    )


def test_another_encoding_or_a_compression_header_is_dead_lettered_undecoded_with_its_reason(pipeline, raw):
    (packer,) = pipeline.start("packer")
    _, plain = _packed("PKG-GZIP")
    cases = {  # message id: (content encoding, headers, what the reason says)
        "gzip": ("gzip", None, "content encoding 'gzip' is not read"),
        "latin-1": ("latin-1", None, "content encoding 'latin-1' is not read"),
        "utf-16": ("utf-16", None, "content encoding 'utf-16' is not read"),
        "compression": (None, {"compression": "application/x-gzip"}, "compression header 'application/x-gzip'"),
    }
    for message_id, (encoding, headers, _) in cases.items():
        raw.publish("package.packed", plain, message_id=message_id, content_encoding=encoding, headers=headers)
    normal = _publish_packages(raw, "NORMAL-D", [{}] * 2)

    wait_until(
        lambda: raw.channel.queue_declare(PACKER_DLQ, passive=True).method.message_count == len(cases),
        30,
        message="every encoded body dead-lettered",
    )
    letters = raw.take_all(PACKER_DLQ)
    for message_id, (encoding, _, reason) in cases.items():
        properties, body = letters[message_id]
        assert body == plain, f"{message_id}: the body was decoded or changed"
        assert properties.content_encoding == encoding, message_id
        assert reason in properties.headers[naming.HEADER_ERROR_MESSAGE], properties.headers
        assert properties.headers[naming.HEADER_ERROR_CLASS] == "PermanentError"
    assert _status(pipeline.database_url, "PKG-GZIP") is None, "an undecoded body was applied"
    wait_until(lambda: _all_pending(pipeline, normal), 30, message="the normal packages applied")
    wait_until(lambda: _settled(pipeline), 30, message="nothing unacknowledged")
    assert packer.alive()


@pytest.mark.parametrize("content_type", [None, "application/json; charset=utf-8"])
def test_a_message_without_or_with_an_unusual_content_type_stays_replayable_from_the_dead_letter_queue(
    pipeline, raw, content_type
):
    (packer,) = pipeline.start("packer")
    event = package_packed("PKG-LATE-CARRIER", "ORD-LATE-CARRIER", [9191], carrier="late-carrier")
    raw.publish("package.packed", to_bytes(event), message_id=event["id"], content_type=content_type)
    wait_until(
        lambda: raw.channel.queue_declare(PACKER_DLQ, passive=True).method.message_count == 1,
        30,
        message="the unknown carrier's package dead-lettered",
    )

    letter = json.loads(pipeline.cli("dlq", "show", "--json", "--queue", "packer").stdout)[0]
    assert letter["content_type"] == content_type, "the dead letter's content type is not the original's"
    assert "unknown carrier 'late-carrier'" in letter["error_message"]

    # The operator adds the carrier, restarts the packer and replays the dead letter.
    packer.terminate()
    carriers = pipeline.tmp_path / "carriers.toml"
    carriers.write_text(
        carriers.read_text() + carriers.read_text().replace("[carriers.sandbox]", "[carriers.late-carrier]")
    )
    pipeline.start("packer")
    pipeline.cli("dlq", "replay", "--all")

    wait_until(
        lambda: _status(pipeline.database_url, "PKG-LATE-CARRIER") == "pending",
        30,
        message="the replayed package applied",
    )
    wait_until(lambda: _settled(pipeline), 30, message="nothing left in any queue")


def test_a_body_nested_deeper_than_any_decoder_goes_is_dead_lettered_by_the_threaded_omnitron_publisher_which_goes_on(
    pipeline_factory,
):
    pipeline = pipeline_factory(extra_env={"OMS_CONCURRENCY": "4"})
    pipeline.carrier.fate = lambda order_number: ["SHIPPING", "DELIVERED"]
    pipeline.start_all_services()
    publisher = next(p for p in pipeline.processes if p.service == "omnitron-publisher")
    deep = b'{"specversion": "1.0", "data": ' + b"[" * 300_000 + b"]" * 300_000 + b"}"
    raw = RawChannel(pipeline.amqp_url)
    try:
        raw.publish("shipment.status_changed.pending", deep, message_id="deep-nesting")
        packed, shipped = package_packed("PKG-AFTER-DEEP", "ORD-AFTER-DEEP", [6161]), package_shipped("PKG-AFTER-DEEP")
        raw.publish("package.packed", to_bytes(packed), message_id=packed["id"])
        raw.publish("package.shipped", to_bytes(shipped), message_id=shipped["id"])

        wait_until(
            lambda: pipeline.omnitron.calls_for_item(6161)[-1:] == [("bulk", "550")],
            90,
            message="the normal package delivered in Omnitron",
        )
        letters = raw.take_all(PUBLISHER_DLQ)
        assert list(letters) == ["deep-nesting"]
        properties, body = letters["deep-nesting"]
        assert body == deep
        # Refused by the bounded reader before any decoder recursed (contracts/wire.py).
        assert "nested more than 64 levels deep" in properties.headers[naming.HEADER_ERROR_MESSAGE]
        assert publisher.alive(), publisher.log_text()[-3000:]
        wait_until(lambda: _settled(pipeline), 30, message="nothing unacknowledged")
    finally:
        raw.close()


def test_a_retry_copy_whose_delay_queue_was_deleted_is_not_lost_the_queue_is_declared_again_and_the_retry_happens(
    pipeline, raw
):
    packer, shipper = pipeline.start("packer")[0], pipeline.start("shipper")[0]
    wait_until(lambda: "consuming" in shipper.log_text(), 30, message="the shipper consuming")
    retry_queues = [naming.retry_queue("shipper", delay) for delay in (0.5, 1, 2)]
    for queue in retry_queues:
        raw.channel.queue_delete(queue)
    pipeline.carrier.fail_next(3, 503)  # the HTTP client tries three times in process

    message_id, body = _packed("PKG-NO-TIER")
    raw.publish("package.packed", body, message_id=message_id)

    wait_until(
        lambda: _status(pipeline.database_url, "PKG-NO-TIER") == "registered",
        60,
        message="the registration retried after the carrier's 503s",
    )
    assert "declaring the topology again" in shipper.log_text()
    assert set(retry_queues) <= set(_unacknowledged(pipeline)), "the deleted delay queues are back"
    wait_until(lambda: _settled(pipeline), 30, message="nothing unacknowledged")
    assert packer.alive() and shipper.alive()


def test_a_publish_no_queue_takes_raises_unroutable_and_the_next_publish_is_confirmed_on_its_own(amqp_url):
    with connect(amqp_url) as connection:
        channel = connection.default_channel
        events_exchange()(channel).declare()
        Queue("taken", exchange=events_exchange(), routing_key="taken", durable=True)(channel).declare()
        publisher = Publisher(connection)

        with pytest.raises(Unroutable) as returned:
            publisher.publish(b"nobody", routing_key="nobody.listens")
        assert (returned.value.routing_key, returned.value.reply_code) == ("nobody.listens", 312)
        publisher.publish(b"plain", routing_key="taken")  # the return's ack was not taken for this one's
        with pytest.raises(Unroutable):
            publisher.publish(b"to a deleted queue", exchange="", routing_key="no-such-queue")
        publisher.publish(b"bare", routing_key="taken", content_type=None, content_encoding=None)

    raw = RawChannel(amqp_url)
    try:
        taken = [(raw.channel.basic_get("taken", auto_ack=True)) for _ in range(3)]
    finally:
        raw.close()
    assert [body for _, _, body in taken[:2]] == [b"plain", b"bare"] and taken[2][0] is None
    bare = taken[1][1]
    assert (bare.content_type, bare.content_encoding, bare.delivery_mode) == (None, None, 2)


def test_the_publish_command_exits_non_zero_naming_the_events_no_queue_takes(amqp_url, tmp_path):
    events = [package_packed(f"PKG-RETURNED-{n}", f"ORD-RETURNED-{n}", [5100 + n]) for n in range(2)]
    lines = tmp_path / "events.jsonl"
    lines.write_text("\n".join(json.dumps(event) for event in events) + "\n")
    env = {**os.environ, "OMS_AMQP_URL": amqp_url, "COLUMNS": "300"}

    def publish() -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(harness.BIN), "publish", str(lines)], env=env, capture_output=True, text=True, timeout=60
        )

    returned = publish()
    assert returned.returncode == 1, returned.stdout + returned.stderr
    message = " ".join(returned.stderr.split())
    assert "2 of 2 events were returned by the broker, no queue is bound for them" in message
    assert f"line 1: PackagePacked {events[0]['id']} under 'package.packed'" in message
    assert "topology declare" in message and "Traceback" not in returned.stderr

    subprocess.run([str(harness.BIN), "topology", "declare"], env=env, capture_output=True, check=True, timeout=60)
    accepted = publish()
    assert accepted.returncode == 0, accepted.stderr


def test_properties_and_header_names_that_are_not_utf_8_cost_only_their_own_message(pipeline, raw):
    (packer,) = pipeline.start("packer")
    _, body = _packed("PKG-UNDECODABLE")
    raw.channel.basic_publish(
        naming.EVENTS_EXCHANGE,
        "package.packed",
        body,
        pika.BasicProperties(
            delivery_mode=2,
            message_id=b"\xff\xfe" * 127,
            type=b"\xc3",
            content_type=b"\xffcloudevents",
            headers={b"\xff-name": "value", "x-big": 2**62},
        ),
        mandatory=True,
    )
    _, readable = _packed("PKG-UNDECODABLE-ID")
    raw.channel.basic_publish(
        naming.EVENTS_EXCHANGE,
        "package.packed",
        readable,
        pika.BasicProperties(delivery_mode=2, message_id=b"\xff", type=b"\xc3", headers={b"\xfe": 1}),
        mandatory=True,
    )
    normal = _publish_packages(raw, "NORMAL-E", [{}] * 2)

    wait_until(
        lambda: _all_pending(pipeline, normal + ["PKG-UNDECODABLE-ID"]),
        30,
        message="the normal packages and the one with an undecodable message id applied",
    )
    wait_until(
        lambda: raw.channel.queue_declare(PACKER_DLQ, passive=True).method.message_count == 1,
        30,
        message="the undecodable content type dead-lettered",
    )
    ((properties, dead_body),) = raw.take_all(PACKER_DLQ).values()
    assert dead_body == body
    assert "unsupported content type" in properties.headers[naming.HEADER_ERROR_MESSAGE]
    wait_until(lambda: _settled(pipeline), 30, message="nothing unacknowledged")
    assert packer.alive(), packer.log_text()[-3000:]
