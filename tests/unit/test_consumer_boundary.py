"""The consumer's boundary, piece by piece: header values of any type read without raising,
our own headers kept only through oms.retry, encodings refused, returned copies never
acked away, and a failing ordering key costing one message, not the worker."""

from __future__ import annotations

import dataclasses
import math
import threading
import uuid
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
from kombu import Connection, Producer

from shared import naming
from shared.broker import Subscription, Topology, Unroutable
from shared.delivery import Delivery, read_delivery
from shared.disposal import DelayedRetries, Disposer
from shared.failure import Decision, RetryPolicy, TransientError, Verdict
from shared.headers import MAX_COUNT, encoding_refusal, read_count, read_instant, without_own
from shared.queue_worker import QueueWorker

from fakes import take_embedded, work_until

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=timezone.utc)


@pytest.mark.parametrize(
    "value, count",
    [
        (3, 3),
        ("7", 7),
        (b"12", 12),
        (Decimal("4.9"), 4),
        (True, 1),
        (-5, 0),
        (10**30, MAX_COUNT),
        ("9" * 5000, 0),
        ("NaN", 0),
        (math.nan, 0),
        (math.inf, 0),
        (Decimal("NaN"), 0),
        ({"n": 1}, 0),
        ([1], 0),
        (None, 0),
        (NOW, 0),
        (b"\xff", 0),
        ("", 0),
    ],
)
def test_a_count_of_any_type_reads_as_a_bounded_integer(value, count):
    assert read_count(value) == count


@pytest.mark.parametrize(
    "value, moment",
    [
        ("2026-12-01T12:00:00+00:00", NOW),
        ("2026-12-01T12:00:00", NOW),  # naive text: UTC
        (datetime(2026, 12, 1, 12, 0), NOW),  # an AMQP timestamp, as py-amqp hands it over (naive UTC)
        ("2026-12-01T15:00:00+03:00", NOW),
        (b"2026-12-01T12:00:00Z", NOW),
        ("not a time", None),
        ("NaN", None),
        ("", None),
        ("2026-12-01T12:00:00" + " " * 100, None),
        ({"at": "2026-12-01T12:00:00Z"}, None),
        (["2026-12-01T12:00:00Z"], None),
        (1764590400, None),
        (math.nan, None),
        (None, None),
        (True, None),
        (b"\xff\xfe", None),
    ],
)
def test_a_moment_of_any_type_reads_as_an_aware_datetime_or_none(value, moment):
    assert read_instant(value) == moment


def test_moments_at_the_calendars_ends_still_compare_with_now():
    assert (read_instant("9999-12-31T23:59:59-23:59") - NOW).total_seconds() > 0
    assert (read_instant("0001-01-01T00:00:00+23:59") - NOW).total_seconds() < 0


def test_only_our_own_headers_are_dropped_in_any_case():
    headers = {"x-oms-attempts": 9, "X-OMS-Not-Before": "x", "x-omsx": 1, "x-death": [], "ce-id": "1", 5: "odd"}
    assert without_own(headers) == {"x-omsx": 1, "x-death": [], "ce-id": "1", 5: "odd"}
    assert without_own(None) == {} and without_own(["x-oms-attempts"]) == {}


@pytest.mark.parametrize("encoding", [None, "", "utf-8", "UTF-8", " Utf-8 ", "binary", "BINARY"])
def test_a_body_marked_utf_8_or_binary_or_not_at_all_is_read(encoding):
    assert encoding_refusal(encoding, {"x-custom": 1}) is None


@pytest.mark.parametrize(
    "encoding, headers, says",
    [
        ("gzip", {}, "content encoding 'gzip' is not read"),
        ("utf8", {}, "content encoding 'utf8'"),  # the contract names utf-8 exactly
        ("latin-1", None, "content encoding 'latin-1'"),
        (b"\xff", {}, "content encoding b'\\xff'"),
        (None, {"compression": "application/x-gzip"}, "compression header 'application/x-gzip'"),
        (None, {"Compression": {"odd": "table"}}, "Compression header {'odd': 'table'}"),
        ("x" * 500, {}, "…"),
    ],
)
def test_another_encoding_or_a_compression_header_is_refused_with_the_value_named(encoding, headers, says):
    assert says in encoding_refusal(encoding, headers)


class FakeAmqpMessage:
    """What read_delivery reads of a broker message."""

    def __init__(self, exchange: str, headers: dict, body=b"{}", content_type=None, content_encoding=None):
        self.body, self.headers = body, headers
        self.content_type, self.content_encoding = content_type, content_encoding
        self.delivery_info = {"exchange": exchange, "routing_key": "package.packed", "redelivered": False}
        self.properties = {"message_id": b"\xffid", "type": None}


OURS = {naming.HEADER_ATTEMPTS: 3, naming.HEADER_NOT_BEFORE: "2099-01-01T00:00:00", "x-upstream": "kept"}


def test_a_delivery_from_anywhere_but_oms_retry_loses_our_headers_and_one_through_it_keeps_them():
    outside = read_delivery(FakeAmqpMessage(naming.EVENTS_EXCHANGE, dict(OURS)))
    direct = read_delivery(FakeAmqpMessage("", dict(OURS)))
    retried = read_delivery(FakeAmqpMessage(naming.RETRY_EXCHANGE, dict(OURS)))

    assert outside.headers == direct.headers == {"x-upstream": "kept"}
    assert outside.failed_attempts == 0
    assert retried.headers == OURS and retried.failed_attempts == 3
    assert outside.message_id == "\ufffdid", "an undecodable message id is still text"


def test_a_body_py_amqp_decoded_to_text_and_headers_that_are_not_a_table_still_make_a_delivery():
    delivery = read_delivery(FakeAmqpMessage(naming.EVENTS_EXCHANGE, None, body="é", content_encoding="utf-8"))
    assert (delivery.body, delivery.headers, delivery.content_encoding) == ("é".encode(), {}, "utf-8")


class RecordingPublisher:
    def __init__(self, returns: int = 0):
        self.published: list[dict] = []
        self._returns = returns

    def publish(self, body, **properties) -> None:
        if self._returns:
            self._returns -= 1
            raise Unroutable(properties["exchange"], properties["routing_key"], 312, "NO_ROUTE")
        self.published.append({"body": body, **properties})


class FakeMessage:
    def __init__(self, tag: int = 1):
        self.delivery_tag, self.acked = tag, False

    def ack(self, multiple: bool = False) -> None:
        self.acked = True


def _disposer(publisher, embedded=False, delayed=None, redeclared=None, max_wait_s=3600.0) -> Disposer:
    return Disposer(
        service="packer",
        policy=RetryPolicy(5, (1.0, 5.0)),
        publisher=publisher,
        embedded=embedded,
        delayed=delayed or DelayedRetries(),
        max_wait_s=max_wait_s,
        redeclare=(lambda: redeclared.append(1)) if redeclared is not None else None,
    )


def _delivery_with(headers: dict | None = None, content_type=None, content_encoding=None) -> Delivery:
    return Delivery(
        body=b"{}",
        content_type=content_type,
        routing_key="package.packed",
        message_id="m-1",
        headers=headers or {},
        content_encoding=content_encoding,
    )


RETRY = Decision(Verdict.RETRY, delay_s=1.0, reason="carrier away", error_class="TransientError")
DEAD = Decision(Verdict.DEAD_LETTER, reason="bad", error_class="PermanentError")


@pytest.mark.parametrize(
    "content_type, content_encoding", [(None, None), ("text/odd", "gzip"), ("application/json", "binary")]
)
def test_a_copy_keeps_the_content_type_and_encoding_of_its_original_absent_ones_absent(content_type, content_encoding):
    publisher = RecordingPublisher()
    disposer = _disposer(publisher)
    for decision in (RETRY, DEAD):
        disposer.dispose(
            FakeMessage(), _delivery_with(content_type=content_type, content_encoding=content_encoding), decision
        )
    assert [(p["content_type"], p["content_encoding"]) for p in publisher.published] == [
        (content_type, content_encoding)
    ] * 2


def test_a_copy_returned_once_is_published_again_after_the_topology_is_declared_again():
    publisher, redeclared, message = RecordingPublisher(returns=1), [], FakeMessage()
    _disposer(publisher, redeclared=redeclared).dispose(message, _delivery_with(), RETRY)
    assert redeclared == [1]
    assert [p["routing_key"] for p in publisher.published] == [naming.retry_queue("packer", 1.0)]
    assert message.acked


def test_a_copy_returned_twice_leaves_its_original_unacknowledged():
    publisher, redeclared, message = RecordingPublisher(returns=2), [], FakeMessage()
    with pytest.raises(Unroutable):
        _disposer(publisher, redeclared=redeclared).dispose(message, _delivery_with(), DEAD)
    assert redeclared == [1] and publisher.published == []
    assert not message.acked


def _not_before(value) -> dict:
    return {naming.HEADER_NOT_BEFORE: value, naming.HEADER_ATTEMPTS: 2}


@pytest.mark.parametrize("value", [{"at": "2099"}, "NaN", 12345, b"\xff", None, [], "2001-01-01T00:00:00"])
def test_an_unreadable_or_past_not_before_is_handled_now(value):
    publisher = RecordingPublisher()
    assert not _disposer(publisher).wait_out(FakeMessage(), _delivery_with(_not_before(value)))
    assert publisher.published == []


@pytest.mark.parametrize("value", ["2099-01-01T00:00:00", datetime(2099, 1, 1), "9999-12-31T23:59:59-23:59"])
def test_a_not_before_beyond_the_longest_wait_allowed_holds_the_message_back_no_longer_than_that(value):
    publisher, message = RecordingPublisher(), FakeMessage()
    before = datetime.now(timezone.utc)
    assert _disposer(publisher, max_wait_s=60).wait_out(message, _delivery_with(_not_before(value)))
    (copy,) = publisher.published
    cut = datetime.fromisoformat(copy["headers"][naming.HEADER_NOT_BEFORE])
    assert before + timedelta(seconds=59) < cut < datetime.now(timezone.utc) + timedelta(seconds=61)
    assert copy["headers"][naming.HEADER_ATTEMPTS] == 2, "waiting is not an attempt"
    assert message.acked


def test_a_naive_not_before_a_little_ahead_is_waited_out_as_utc():
    publisher = RecordingPublisher()
    ahead = (datetime.now(timezone.utc) + timedelta(seconds=30)).replace(tzinfo=None).isoformat()
    assert _disposer(publisher).wait_out(FakeMessage(), _delivery_with(_not_before(ahead)))
    assert publisher.published[0]["headers"][naming.HEADER_NOT_BEFORE] == ahead
    assert publisher.published[0]["routing_key"] == naming.retry_queue("packer", 5.0), "round the longest tier"


def test_a_retry_asking_for_longer_than_the_longest_wait_allowed_is_told_to_wait_only_that():
    publisher = RecordingPublisher()
    long_wait = Decision(
        Verdict.RETRY, delay_s=5.0, reason="slow down", error_class="TransientError", min_delay_s=5.0, wait_s=10**9
    )
    _disposer(publisher, max_wait_s=60).dispose(FakeMessage(), _delivery_with(), long_wait)
    not_before = datetime.fromisoformat(publisher.published[0]["headers"][naming.HEADER_NOT_BEFORE])
    assert not_before < datetime.now(timezone.utc) + timedelta(seconds=61)


# ---- the worker on the embedded broker ------------------------------------------------


def _embedded(service: str, retry_s: float = 0.05) -> tuple[Topology, str]:
    topology = Topology([Subscription(service, ("boundary.test",))], [retry_s])
    with Connection("memory://") as connection:
        topology.declare(connection, services=[service])
    return topology, naming.work_queue(service)


def _publish(queue: str, *bodies: bytes, headers: dict | None = None) -> None:
    with Connection("memory://") as connection:
        producer = Producer(connection.channel())
        for body in bodies:
            producer.publish(
                body,
                exchange="",
                routing_key=queue,
                content_type="application/json",
                content_encoding="binary",
                message_id=uuid.uuid4().hex,
                headers=headers or {},
            )


def test_an_ordering_key_that_raises_dead_letters_its_message_and_the_threaded_worker_goes_on():
    service, stop = f"boundary-{uuid.uuid4().hex[:8]}", threading.Event()
    topology, queue = _embedded(service)
    handled: list[bytes] = []

    def key(delivery):
        if delivery.body == b"deep":
            raise RecursionError("maximum recursion depth exceeded while decoding a JSON array")
        return delivery.body.decode()

    worker = QueueWorker(
        amqp_url="memory://",
        topology=topology,
        subscription=topology.subscriptions[0],
        handle=lambda delivery: handled.append(delivery.body),
        policy=RetryPolicy(3, (0.05,)),
        stop=stop,
        concurrency=4,
        ordering_key=key,
    )
    _publish(queue, b"one", b"deep", b"two")
    dead: list = []
    work_until(worker, stop, until=lambda: len(handled) == 2 and (dead.extend(take_embedded(queue + ".dlq")) or dead))

    assert sorted(handled) == [b"one", b"two"]
    assert [m.body for m in dead] == [b"deep"]
    assert dead[0].headers[naming.HEADER_ERROR_CLASS] == "RecursionError"
    assert "the consumer could not take this message: RecursionError" in dead[0].headers[naming.HEADER_ERROR_MESSAGE]


def test_the_embedded_brokers_in_process_retries_count_their_attempts_and_outside_counts_do_not():
    service, stop = f"boundary-{uuid.uuid4().hex[:8]}", threading.Event()
    topology, queue = _embedded(service)
    attempts: list[int] = []

    def handle(delivery):
        attempts.append(delivery.failed_attempts)
        raise TransientError("carrier away")

    worker = QueueWorker(
        amqp_url="memory://",
        topology=topology,
        subscription=topology.subscriptions[0],
        handle=handle,
        policy=RetryPolicy(3, (0.05,)),
        stop=stop,
    )
    _publish(queue, b"package", headers={naming.HEADER_ATTEMPTS: 999})
    dead: list = []
    work_until(worker, stop, until=lambda: dead.extend(take_embedded(queue + ".dlq")) or dead)

    assert attempts == [0, 1, 2], "the outside 999 was read, or the in-process retries lost their count"
    assert dead[0].headers[naming.HEADER_ATTEMPTS] == 3


def test_a_compressed_body_never_reaches_the_handler():
    service, stop = f"boundary-{uuid.uuid4().hex[:8]}", threading.Event()
    topology, queue = _embedded(service)
    handled: list = []
    worker = QueueWorker(
        amqp_url="memory://",
        topology=topology,
        subscription=topology.subscriptions[0],
        handle=handled.append,
        policy=RetryPolicy(3, (0.05,)),
        stop=stop,
    )
    with Connection("memory://") as connection:
        Producer(connection.channel()).publish(
            b"plain",
            exchange="",
            routing_key=queue,
            content_type="application/json",
            content_encoding="gzip",
            message_id="gz",
        )
    dead: list = []
    work_until(worker, stop, until=lambda: dead.extend(take_embedded(queue + ".dlq")) or dead)

    assert handled == []
    assert "content encoding 'gzip' is not read" in dead[0].headers[naming.HEADER_ERROR_MESSAGE]


def _letter(headers: dict):
    import pika

    from services.tools.dlq_model import DeadLetter

    return DeadLetter.from_delivery(naming.dead_letter_queue("packer"), 0, pika.BasicProperties(headers=headers), b"{}")


def test_a_replay_of_a_message_the_broker_dead_lettered_from_upstream_drops_the_x_oms_headers_it_came_with():
    from services.tools.dlq_model import replay_headers

    forged = {
        "x-oms-original-routing-key": "package.forged",
        "x-oms-not-before": "2099-01-01T00:00:00Z",
        "x-upstream": "kept",
        "x-death": [{"reason": "delivery_limit", "exchange": naming.EVENTS_EXCHANGE, "count": 1}],
    }
    ours = {
        naming.HEADER_ROUTING_KEY: "package.packed",
        naming.HEADER_NOT_BEFORE: "2099-01-01T00:00:00Z",
        naming.HEADER_ATTEMPTS: 4,
        "x-upstream": "kept",
    }

    from_upstream = replay_headers(_letter(forged), NOW)
    from_us = replay_headers(_letter(ours), NOW)

    assert not [
        name for name in from_upstream if name.startswith("x-oms-") and "replay" not in name and "previous" not in name
    ]
    assert from_upstream["x-upstream"] == "kept" and "x-death" not in from_upstream
    assert from_us[naming.HEADER_ROUTING_KEY] == "package.packed", "our own copy's headers go along"
    assert naming.HEADER_NOT_BEFORE not in from_us and naming.HEADER_ATTEMPTS not in from_us, "a fresh start"


def test_a_copy_back_through_oms_retry_knows_the_routing_key_it_was_first_published_under():
    retried = read_delivery(FakeAmqpMessage(naming.RETRY_EXCHANGE, {naming.HEADER_ROUTING_KEY: "package.packed"}))
    forged = read_delivery(FakeAmqpMessage(naming.EVENTS_EXCHANGE, {naming.HEADER_ROUTING_KEY: "package.shipped"}))
    odd = read_delivery(FakeAmqpMessage(naming.RETRY_EXCHANGE, {naming.HEADER_ROUTING_KEY: {"a": 1}}))
    retried = dataclasses.replace(retried, routing_key=naming.work_queue("packer"))
    assert retried.published_routing_key == "package.packed"
    assert forged.published_routing_key == odd.published_routing_key == "package.packed"
