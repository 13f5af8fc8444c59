"""The running services as a hostile upstream sees them, and the verdict on every odd message.

One :class:`World` per test module: the four ``oms-shipments run …`` processes, started once,
take hundreds of hypothesis examples. Examples share the services, so each is told apart by
its own package ids and by a tracer header (``hostile-case``) that the services copy onto
retry and dead-letter copies like any other foreign header; the verdict of every odd message
is read back from the dead-letter queues (matched by tracer) or from the database.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import pika
import psycopg

from services.runtime.registry import SERVICES
from shared import naming

import harness
from events import package_packed, package_shipped, to_bytes
from hostile_messages import TRACER, OddMessage, Verdict, deep_recursion, install_raw_fields

SUBSCRIPTIONS = tuple(SERVICES[name].subscription for name in ("packer", "shipper", "omnitron-publisher"))
CONSUMERS = tuple(s.service for s in SUBSCRIPTIONS)
# What the services themselves write on a retry or dead-letter copy: the truth, not a forgery.
OWN_FAILURE_HEADERS = {
    naming.HEADER_ATTEMPTS,
    naming.HEADER_SERVICE,
    naming.HEADER_QUEUE,
    naming.HEADER_ROUTING_KEY,
    naming.HEADER_ERROR_CLASS,
    naming.HEADER_ERROR_MESSAGE,
    naming.HEADER_FIRST_FAILURE,
    naming.HEADER_LAST_FAILURE,
}
# Contract §1: a content type the services read as the message's own.
READ_AS_CLOUDEVENTS = {None, "application/cloudevents+json", "application/json"}
DELIVERED = ("bulk", "550")


def topic_matches(pattern: str, routing_key: str) -> bool:
    """AMQP topic matching for the services' bindings (``*`` is one word; they use no ``#``)."""
    words, keys = pattern.split("."), routing_key.split(".")
    return len(words) == len(keys) and all(w in ("*", k) for w, k in zip(words, keys))


def receivers(routing_key: str) -> list[str]:
    return [s.service for s in SUBSCRIPTIONS if any(topic_matches(p, routing_key) for p in s.routing_keys)]


@dataclass
class DeadLetter:
    service: str
    properties: pika.BasicProperties
    body: bytes

    @property
    def headers(self) -> dict:
        return self.properties.headers or {}


@dataclass
class Sent:
    tracer: str
    message: OddMessage
    receivers: list[str]


@dataclass
class NormalPackage:
    package_id: str
    item_id: int


class Unsettled(AssertionError):
    pass


@dataclass
class World:
    pipeline: object
    dead: dict[str, list[DeadLetter]] = field(default_factory=dict)
    untraced: list[DeadLetter] = field(default_factory=list)
    normal: list[NormalPackage] = field(default_factory=list)
    exits: list[str] = field(default_factory=list)

    def __post_init__(self):
        install_raw_fields()
        self._connection = pika.BlockingConnection(pika.URLParameters(self.pipeline.amqp_url))
        self._channel = self._connection.channel()
        self._channel.confirm_delivery()
        self._db = psycopg.connect(self.pipeline.database_url, autocommit=True)
        self._next_item = 900_000

    # ---- publishing ----------------------------------------------------------------------

    def _live_connection(self) -> pika.BlockingConnection:
        if self._connection.is_closed:
            self._connection = pika.BlockingConnection(pika.URLParameters(self.pipeline.amqp_url))
        return self._connection

    def _channel_ok(self) -> pika.adapters.blocking_connection.BlockingChannel:
        if self._channel.is_closed or self._connection.is_closed:
            self._channel = self._live_connection().channel()
            self._channel.confirm_delivery()
        return self._channel

    def publish(self, message: OddMessage) -> Sent:
        tracer = uuid.uuid4().hex
        headers = {**message.headers, TRACER: tracer} if message.headers is not None else {TRACER: tracer}
        properties = pika.BasicProperties(headers=headers, **message.properties)
        with deep_recursion():
            self._channel_ok().basic_publish(
                naming.EVENTS_EXCHANGE, message.routing_key, message.body, properties, mandatory=True
            )
        return Sent(tracer, message, receivers(message.routing_key))

    def send_normal_package(self) -> NormalPackage:
        """A package as every upstream sends it; it must reach its final Omnitron state whatever else comes."""
        self._next_item += 1
        package = NormalPackage(f"PKG-NORMAL-{uuid.uuid4().hex[:12]}", self._next_item)
        packed = package_packed(package.package_id, f"ORD-{package.package_id}", [package.item_id])
        shipped = package_shipped(package.package_id)
        for routing_key, event in (("package.packed", packed), ("package.shipped", shipped)):
            self._channel_ok().basic_publish(
                naming.EVENTS_EXCHANGE,
                routing_key,
                to_bytes(event),
                pika.BasicProperties(
                    delivery_mode=2,
                    content_type="application/cloudevents+json",
                    message_id=event["id"],
                    type=event["type"],
                ),
                mandatory=True,
            )
        self.normal.append(package)
        return package

    # ---- reading the outcome -------------------------------------------------------------

    def collect_dead_letters(self) -> None:
        channel = self._channel_ok()
        for service in CONSUMERS:
            while True:
                with deep_recursion():
                    method, properties, body = channel.basic_get(naming.dead_letter_queue(service), auto_ack=True)
                if method is None:
                    break
                letter = DeadLetter(service, properties, body)
                tracer = letter.headers.get(TRACER)
                if isinstance(tracer, bytes):
                    tracer = tracer.decode(errors="replace")
                if isinstance(tracer, str):
                    self.dead.setdefault(tracer, []).append(letter)
                else:
                    self.untraced.append(letter)

    def applied(self, probe: tuple[str, str] | None) -> bool:
        if probe is None:
            return False
        kind, package_id = probe
        if kind == "packed":
            sql = "SELECT 1 FROM shipments WHERE package_id = %s"
        elif kind == "shipped":
            sql = "SELECT 1 FROM packages WHERE package_id = %s AND shipped_at IS NOT NULL"
        else:  # an operator command for a package never packed: kept until it is (contract §2)
            sql = "SELECT 1 FROM waiting_commands WHERE package_id = %s"
        return self._db.execute(sql, (package_id,)).fetchone() is not None

    def _letters_by_service(self, sent: Sent) -> dict[str, list[DeadLetter]]:
        by_service: dict[str, list[DeadLetter]] = {}
        for letter in self.dead.get(sent.tracer, []):
            by_service.setdefault(letter.service, []).append(letter)
        return by_service

    def _resolved(self, sent: Sent) -> str | None:
        """ "dead" when every receiver dead-lettered it, "applied" when its effect is seen."""
        letters = self._letters_by_service(sent)
        if sent.receivers and all(service in letters for service in sent.receivers):
            return "dead"
        if sent.message.probe is not None and self.applied(sent.message.probe):
            return "applied"
        return None

    def settle(self, sent: list[Sent], timeout_s: float = 20.0) -> dict[str, str]:
        """Waits until every odd message is applied or dead-lettered by each service that got it.

        A settled example takes well under a second; 20 s leaves room for a loaded machine
        and stays well below the minute after which the broker drops a stalled consumer for
        missed heartbeats (and so would hide the stall by delivering its messages again).
        """
        deadline = time.monotonic() + timeout_s
        outcome: dict[str, str] = {}
        while True:
            self.assert_none_exited()
            self.collect_dead_letters()
            for item in sent:
                if item.tracer not in outcome:
                    resolved = self._resolved(item)
                    if resolved:
                        outcome[item.tracer] = resolved
            if len(outcome) == len(sent) or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        stuck = [item for item in sent if item.tracer not in outcome]
        if stuck:
            raise Unsettled("; ".join(self.whereabouts(item) for item in stuck))
        return outcome

    def whereabouts(self, sent: Sent) -> str:
        """Where an unsettled message is: a retry queue, its work queue, or nowhere (lost)."""
        places = []
        for service in sent.receivers:
            for queue in [
                naming.work_queue(service),
                *(naming.retry_queue(service, d) for d in self.pipeline_retry_delays()),
            ]:
                for properties, _ in self.peek(queue):
                    if (properties.headers or {}).get(TRACER) == sent.tracer:
                        attempts = (properties.headers or {}).get(naming.HEADER_ATTEMPTS)
                        places.append(f"{queue} (x-oms-attempts={attempts!r})")
        letters = self._letters_by_service(sent)
        where = ", ".join(places) or "in no queue (acknowledged without effect, or held unacked)"
        return (
            f"{sent.message.why!r} under {sent.message.routing_key!r} neither applied nor dead-lettered "
            f"by {[s for s in sent.receivers if s not in letters]}: {where}"
        )

    def pipeline_retry_delays(self) -> list[float]:
        return json.loads(self.pipeline.env["OMS_RETRY_DELAYS_S"])

    def peek(self, queue: str) -> list[tuple[pika.BasicProperties, bytes]]:
        """The ready messages of a queue, handed back in their order (nack with requeue)."""
        channel = self._live_connection().channel()
        try:
            found = []
            while True:
                with deep_recursion():
                    method, properties, body = channel.basic_get(queue, auto_ack=False)
                if method is None:
                    break
                found.append((properties, body))
            return found
        except pika.exceptions.ChannelClosedByBroker:
            return []
        finally:
            if channel.is_open:
                channel.close()  # everything taken goes back, in order

    def try_messages(self, messages: list[OddMessage]) -> None:
        """One example: the odd messages, then a normal package behind them; each judged, none fatal."""
        self.revive()
        sent = [self.publish(message) for message in messages]
        normal = self.send_normal_package()
        outcome = self.settle(sent)
        for item in sent:
            self.check(item, outcome[item.tracer])
        harness.wait_until(
            lambda: self.applied(("packed", normal.package_id)),
            20,
            0.05,
            message=f"the normal package {normal.package_id} behind the odd messages packed",
        )
        self.assert_none_exited()

    # ---- verdicts ------------------------------------------------------------------------

    def check(self, sent: Sent, outcome: str) -> None:
        message = sent.message
        if message.expect is Verdict.DEAD:
            assert outcome == "dead", f"{message.why!r} was applied; the contract rejects it"
        if message.expect is Verdict.APPLIED:
            assert outcome == "applied", (
                f"{message.why!r} was dead-lettered: "
                f"{[letter.headers.get(naming.HEADER_ERROR_MESSAGE) for letter in self.dead[sent.tracer]]}"
            )
            assert sent.tracer not in self.dead, f"{message.why!r} was applied and dead-lettered too"
        if outcome == "dead":
            for letter in self.dead[sent.tracer]:
                self.check_dead_letter(sent, letter)

    def check_dead_letter(self, sent: Sent, letter: DeadLetter) -> None:
        message, headers, why = sent.message, letter.headers, sent.message.why
        reason = headers.get(naming.HEADER_ERROR_MESSAGE)
        assert isinstance(reason, str) and reason.strip(), f"{why!r}: dead letter without a reason: {reason!r}"
        assert letter.body == message.body, f"{why!r}: the dead letter's body is not the message as it came"
        assert headers.get(naming.HEADER_ATTEMPTS) == 1, (
            f"{why!r}: dead-lettered by {letter.service} with x-oms-attempts="
            f"{headers.get(naming.HEADER_ATTEMPTS)!r}, not at once (reason: {reason!r})"
        )
        assert headers.get(naming.HEADER_SERVICE) == letter.service, f"{why!r}: {headers.get(naming.HEADER_SERVICE)!r}"
        assert headers.get(naming.HEADER_ROUTING_KEY) == message.routing_key, (
            f"{why!r}: the dead letter names routing key {headers.get(naming.HEADER_ROUTING_KEY)!r}, "
            f"it came under {message.routing_key!r}"
        )
        first_failure = headers.get(naming.HEADER_FIRST_FAILURE)
        assert isinstance(first_failure, str) and _recent(first_failure), (
            f"{why!r}: x-oms-first-failure-at {first_failure!r} is not this failure's"
        )
        forged = {name: value for name, value in (message.headers or {}).items() if name.startswith("x-oms-")}
        for name, value in forged.items():
            if name not in OWN_FAILURE_HEADERS:
                assert name not in headers, (
                    f"{why!r}: the forged header {name}={value!r} was copied onto the dead letter"
                )
        assert letter.properties.content_type in (
            {message.properties.get("content_type")}
            | (READ_AS_CLOUDEVENTS if message.properties.get("content_type") is None else set())
        ), (
            f"{why!r}: content type {message.properties.get('content_type')!r} became "
            f"{letter.properties.content_type!r} on the dead letter, so a replay is judged differently"
        )
        encoding = message.properties.get("content_encoding")
        if encoding is not None and encoding.lower() not in ("utf-8", "binary"):
            assert letter.properties.content_encoding == encoding, (
                f"{why!r}: content encoding {encoding!r} became {letter.properties.content_encoding!r} "
                "on the dead letter, so a replay would read it as UTF-8"
            )

    # ---- the processes -------------------------------------------------------------------

    def exited(self) -> list[str]:
        return [f"{p.service} (exit code {p.process.poll()})" for p in self.pipeline.processes if not p.alive()]

    def assert_none_exited(self) -> None:
        dead = [p for p in self.pipeline.processes if not p.alive()]
        assert not dead, "a service exited: " + "; ".join(
            f"{p.service} (exit code {p.process.poll()}), its log ends: {_last_error(p.log_text())}" for p in dead
        )

    def revive(self) -> None:
        """After a process exited: take the odd messages out of its queue (the one that killed it is
        among them) and start it again, so the next example meets running services."""
        for process in list(self.pipeline.processes):
            if process.alive():
                continue
            self.exits.append(f"{process.service}: {process.log_text()[-3000:]}")
            if process.service in CONSUMERS:
                self._drop_traced(naming.work_queue(process.service))
            self.pipeline.processes.remove(process)
            self.pipeline.start(process.service, 1, *process.extra_args)

    def _drop_traced(self, queue: str) -> None:
        channel = self._live_connection().channel()
        try:
            while True:
                with deep_recursion():
                    method, properties, _ = channel.basic_get(queue, auto_ack=False)
                if method is None:
                    break
                if TRACER in (properties.headers or {}):
                    channel.basic_ack(method.delivery_tag)
        finally:
            if channel.is_open:
                channel.close()  # the normal messages taken go back to the queue

    # ---- the end of a run ----------------------------------------------------------------

    def wait_for_normal_packages(self, timeout_s: float = 180) -> None:
        omnitron = self.pipeline.omnitron
        harness.wait_until(
            lambda: all(omnitron.calls_for_item(p.item_id)[-1:] == [DELIVERED] for p in self.normal),
            timeout_s,
            0.5,
            message=f"every one of {len(self.normal)} normal packages delivered in Omnitron "
            f"(missing: {[p.package_id for p in self.normal if omnitron.calls_for_item(p.item_id)[-1:] != [DELIVERED]][:5]})",
        )

    def finish(self) -> None:
        """The end of a run: no process exited, every normal package delivered, nothing in flight."""
        self.assert_none_exited()
        self.wait_for_normal_packages()
        harness.wait_until(lambda: not self.in_flight(), 60, 1.0, message="no message left in a work or retry queue")
        self.assert_none_exited()
        assert not self.exits, "services exited during the run (revived to go on): " + "\n".join(self.exits)

    def warm_up(self) -> None:
        """Waits until the services run: a normal package packed."""
        package = self.send_normal_package()
        harness.wait_until(lambda: self.applied(("packed", package.package_id)), 60, 0.1, message="the services up")

    def in_flight(self) -> dict[str, tuple[int, int]]:
        """Every work and retry queue that still holds a message, ready or unacknowledged."""
        vhost = self.pipeline.amqp_url.rsplit("/", 1)[1]
        listing = harness.rabbitmqctl(
            "list_queues", "-p", vhost, "-q", "--no-table-headers", "name", "messages_ready", "messages_unacknowledged"
        )
        busy = {}
        for line in listing.splitlines():
            parts = line.split()
            if len(parts) == 3 and not parts[0].endswith(".dlq") and parts[0].startswith(naming.PREFIX):
                ready, unacked = int(parts[1]), int(parts[2])
                if ready or unacked:
                    busy[parts[0]] = (ready, unacked)
        return busy

    def close(self) -> None:
        for closable in (self._connection, self._db):
            try:
                closable.close()
            except Exception:
                pass


def _last_error(log: str) -> str:
    """The end of the traceback a dying process logged last (its JSON line's exception), else the log's tail."""
    for line in reversed(log.splitlines()):
        if "Traceback" in line:
            try:
                line = json.loads(line).get("exception", line)
            except ValueError:
                pass
            return "..." + line[-900:]
    return log[-900:]


def _recent(iso: str) -> bool:
    try:
        moment = datetime.fromisoformat(iso)
    except ValueError:
        return False
    if moment.tzinfo is None:
        return False
    return abs(datetime.now(timezone.utc) - moment) < timedelta(minutes=30)
