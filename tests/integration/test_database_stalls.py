"""A process that freezes while it holds a database lock, or whose session the server ends,
does not stop the others for long, and nothing is lost.

Real ``oms-shipments run`` processes, real RabbitMQ and PostgreSQL; a process is frozen
with SIGSTOP (as a stalled VM, a debugger or swapping would) and always let go again in
a ``finally``. PostgreSQL itself keeps running. Which process holds the relay's advisory
lock is read from ``pg_locks`` and ``pg_stat_activity`` (every session is named after
its process: ``oms-shipments[<pid>]``).
"""

from __future__ import annotations

import os
import re
import signal
import time
from contextlib import contextmanager
from dataclasses import dataclass

import pika
import psycopg
from test_crash_safety import (
    FATES,
    Flow,
    Package,
    StatusTap,
    assert_carrier_registered_each_shipment_once,
    assert_omnitron_got_each_call_once,
    collapse,
    finish_and_audit,
    query,
)

from shared import naming
from shared.relay import _RELAY_LOCK_KEY

import harness
from harness import wait_until

#: The issue's bound: relaying stops for no longer than this when a lock holder freezes.
RESUME_WITHIN_S = 30
_LOCK_CLASSID, _LOCK_OBJID = _RELAY_LOCK_KEY >> 32, _RELAY_LOCK_KEY & 0xFFFFFFFF
_PROCESS = re.compile(r"^oms-shipments\[(\d+)\]$")


class Sessions:
    """An autocommit connection of the test's own, looking at every service's sessions."""

    def __init__(self, database_url: str):
        self.connection = psycopg.connect(database_url, autocommit=True)

    def relay_lock_holders(self) -> list[tuple[int, int]]:
        """(process id, backend pid) of whoever holds the relay's advisory lock."""
        rows = self.connection.execute(
            "SELECT a.application_name, a.pid FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
            "WHERE l.locktype = 'advisory' AND l.granted AND l.classid::bigint = %s AND l.objid::bigint = %s",
            (_LOCK_CLASSID, _LOCK_OBJID),
        ).fetchall()
        return [(int(match[1]), backend) for name, backend in rows if (match := _PROCESS.match(name or ""))]

    def idle_in_transaction(self, pids: set[int], for_at_least_s: float) -> list[tuple[int, int]]:
        """(process id, backend pid) of the sessions of these processes idle in a transaction that long."""
        rows = self.connection.execute(
            "SELECT application_name, pid FROM pg_stat_activity WHERE state = 'idle in transaction' "
            "AND now() - state_change > make_interval(secs => %s)",
            (for_at_least_s,),
        ).fetchall()
        found = [(int(match[1]), backend) for name, backend in rows if (match := _PROCESS.match(name or ""))]
        return [(pid, backend) for pid, backend in found if pid in pids]

    def alive(self, backend: int) -> bool:
        return bool(self.connection.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", (backend,)).fetchall())

    def terminate(self, backend: int) -> None:
        self.connection.execute("SELECT pg_terminate_backend(%s)", (backend,))

    def close(self) -> None:
        self.connection.close()


class Frozen:
    """Processes stopped with SIGSTOP; each is continued again, whatever happens."""

    def __init__(self):
        self.pids: set[int] = set()

    def stop(self, pid: int) -> None:
        os.kill(pid, signal.SIGSTOP)
        self.pids.add(pid)

    def cont(self, pid: int) -> None:
        if pid in self.pids:
            self.pids.discard(pid)
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                pass

    def cont_all(self) -> None:
        for pid in list(self.pids):
            self.cont(pid)


@contextmanager
def freezing():
    frozen = Frozen()
    try:
        yield frozen
    finally:
        frozen.cont_all()


def freeze_the_relay_lock_holder(
    sessions: Sessions, frozen: Frozen, processes: dict[int, harness.ServiceProcess], timeout: float = 60
) -> tuple[int, int]:
    """Stops whichever of ``processes`` holds the relay lock, while it holds it; (pid, backend).

    A round holds the lock for milliseconds: the holder seen may have let go before the
    signal lands, so it is looked at again once stopped, and let go if it no longer holds it.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for pid, backend in sessions.relay_lock_holders():
            if pid not in processes:
                continue
            frozen.stop(pid)
            if (pid, backend) in sessions.relay_lock_holders():
                return pid, backend
            frozen.cont(pid)
        time.sleep(0.001)
    raise AssertionError("never caught a relay holding its lock")


class Watch:
    """A queue of the test's own on every status change, counted without taking anything."""

    def __init__(self, amqp_url: str, name: str = "test.status-watch"):
        self._connection = pika.BlockingConnection(pika.URLParameters(amqp_url + "?heartbeat=0"))
        self._channel = self._connection.channel()
        self._name = name
        self._channel.queue_declare(name)
        self._channel.queue_bind(name, "oms.events", routing_key="shipment.status_changed.*")

    def count(self) -> int:
        return self._channel.queue_declare(self._name, passive=True).method.message_count

    def close(self) -> None:
        self._connection.close()


def time_until_relaying_resumes(watch: Watch, since: float, timeout: float) -> float:
    """Seconds from ``since`` until a status event not published before leaves the outbox."""
    time.sleep(0.5)  # frames the frozen relay wrote before it stopped are routed by now
    baseline = watch.count()
    wait_until(lambda: watch.count() > baseline, timeout, interval=0.05, message="relaying to resume")
    return time.monotonic() - since


#: A frozen consumer keeps what it was sent until the broker gives up on its connection (its
#: heartbeat, the broker's bound): with one message in hand, the others get the rest.
ONE_IN_HAND = {"OMS_PREFETCH": "1", "OMS_BATCH_SIZE": "1"}


def halves(count: int) -> tuple[Flow, Flow, Flow]:
    """A flow, and its first and second half (published before and after the freeze)."""
    flow = Flow.of(count, FATES)
    return flow, Flow(flow.packages[: count // 2]), Flow(flow.packages[count // 2 :])


def single_item_flow(count: int) -> Flow:
    """Packages of one order item each: a change is one Omnitron call (see the note in the
    frozen-publisher test)."""
    return Flow([Package(f"PKG-{n:04d}", f"ORD-{n:04d}", [20_000 + n], FATES[n % len(FATES)]) for n in range(count)])


def wait_until_final(pipeline, items: dict[int, list], timeout: float, message: str) -> None:
    """Until each item's last Omnitron call is its final status (an intermediate one may be skipped)."""
    wait_until(
        lambda: all(
            collapse(pipeline.omnitron.calls_for_item(item))[-1:] == calls[-1:] for item, calls in items.items()
        ),
        timeout,
        message=message,
    )


def assert_nothing_left_over(pipeline) -> None:
    """No event stored, none queued or unacknowledged, none dead-lettered."""
    assert query(pipeline, "SELECT count(*) AS n FROM outbox")[0]["n"] == 0
    vhost = pipeline.amqp_url.rsplit("/", 1)[1]
    listing = harness.rabbitmqctl(
        "list_queues", "-p", vhost, "--quiet", "--no-table-headers", "name", "messages", "messages_unacknowledged"
    )
    rows = [line.split() for line in listing.splitlines() if line.startswith(naming.PREFIX)]
    assert all(row[1:] == ["0", "0"] for row in rows), rows


def assert_no_status_went_back(pipeline, flow: Flow) -> None:
    """Omnitron saw each order item's statuses in their order; a skipped intermediate one is allowed."""
    for item, expected in flow.expected_calls.items():
        seen = collapse(pipeline.omnitron.calls_for_item(item))
        assert seen[-1] == expected[-1], f"order item {item}: {seen}"
        position = 0
        for call in seen:
            assert call in expected[position:], f"order item {item} went back: {seen}"
            position = expected.index(call, position)


# ---- the relay's lock holder --------------------------------------------------------------


@dataclass
class LoneRelay:
    """A packer started alone, so that its relay is the only one and is caught holding the lock,
    with half of a flow published to it; the other half waits for the rest of the pipeline."""

    pipeline: object
    flow: Flow
    after: Flow
    tap: StatusTap
    watch: Watch
    sessions: Sessions
    packer: harness.ServiceProcess

    @classmethod
    def start(cls, pipeline_factory) -> "LoneRelay":
        pipeline = pipeline_factory(poll_interval_s=0.1, extra_env=ONE_IN_HAND)
        flow, before, after = halves(24)
        flow.use_fates(pipeline)
        tap = StatusTap(pipeline)
        [packer] = pipeline.start("packer")
        before.publish(pipeline)
        return cls(pipeline, flow, after, tap, Watch(pipeline.amqp_url), Sessions(pipeline.database_url), packer)

    def catch_holding(self, frozen: Frozen) -> tuple[int, int]:
        return freeze_the_relay_lock_holder(self.sessions, frozen, {self.packer.process.pid: self.packer})

    def start_the_rest(self, *services: str) -> None:
        for service in services:
            self.pipeline.start(service)
        self.after.publish(self.pipeline)  # work for the others, whatever the frozen one holds

    def finish_and_audit(self) -> None:
        finish_and_audit(self.pipeline, self.flow, self.tap, timeout=120)
        assert_omnitron_got_each_call_once(self.pipeline, self.flow)
        assert_carrier_registered_each_shipment_once(self.pipeline)

    def close(self) -> None:
        self.watch.close()
        self.sessions.close()


def test_a_relay_frozen_while_holding_its_lock_stops_relaying_for_less_than_30_seconds_and_loses_nothing(
    pipeline_factory,
):
    lone = LoneRelay.start(pipeline_factory)
    try:
        with freezing() as frozen:
            pid, backend = lone.catch_holding(frozen)
            frozen_at = time.monotonic()
            lone.start_the_rest("packer", "shipper", "tracker", "omnitron-publisher")

            resumed_after = time_until_relaying_resumes(lone.watch, frozen_at, timeout=RESUME_WITHIN_S + 30)
            print(f"relaying resumed {resumed_after:.1f}s after its lock holder froze")
            assert resumed_after < RESUME_WITHIN_S
            assert not lone.sessions.alive(backend), "the frozen holder's session still stands"
            assert lone.packer.alive()
        # Continued, the frozen process finds its session gone, connects again and carries on.
        lone.finish_and_audit()
    finally:
        lone.close()


def test_a_relay_whose_session_the_server_terminates_while_it_holds_the_lock_carries_on_and_loses_nothing(
    pipeline_factory,
):
    lone = LoneRelay.start(pipeline_factory)
    try:
        with freezing() as frozen:
            pid, backend = lone.catch_holding(frozen)
            lone.sessions.terminate(backend)
            wait_until(lambda: not lone.sessions.alive(backend), 10, message="the holder's session to end")
            terminated_at = time.monotonic()
            frozen.cont(pid)
            lone.start_the_rest("shipper", "tracker", "omnitron-publisher")

            resumed_after = time_until_relaying_resumes(lone.watch, terminated_at, timeout=RESUME_WITHIN_S + 30)
            print(f"relaying resumed {resumed_after:.1f}s after the lock holder's session was terminated")
            assert resumed_after < RESUME_WITHIN_S
        lone.finish_and_audit()
        assert lone.packer.process.returncode == 0, "the packer did not carry on to a clean stop"
    finally:
        lone.close()


# ---- an Omnitron publisher holding a shipment's cursor lock --------------------------------


def test_an_omnitron_publisher_frozen_mid_call_holds_up_only_its_own_shipment_and_that_one_until_its_session_ends(
    pipeline_factory,
):
    idle_in_transaction_s = 40
    pipeline = pipeline_factory(
        poll_interval_s=0.1,
        extra_env={
            **ONE_IN_HAND,
            "OMS_DB_IDLE_IN_TRANSACTION_TIMEOUT_S": str(idle_in_transaction_s),
            "OMS_DB_LOCK_TIMEOUT_S": "2",
        },
    )
    # One item per package: a publisher continued after its lock was taken from it would go on
    # with the rest of its change's calls (one per item for some statuses), late; that is the
    # Omnitron publisher's to guard against, not what this test is about.
    flow = single_item_flow(8)
    flow.use_fates(pipeline)
    sessions = Sessions(pipeline.database_url)
    for service in ("packer", "shipper", "tracker"):
        pipeline.start(service)
    publishers = {p.process.pid: p for p in pipeline.start("omnitron-publisher", 2)}
    stall_s = 3.0
    pipeline.omnitron.stall_next(1, stall_s)  # the first Omnitron call takes a while: a publisher is mid-call
    flow.publish(pipeline)
    try:
        with freezing() as frozen:
            [(pid, backend)] = wait_until(
                lambda: sessions.idle_in_transaction(set(publishers), 0.5),
                30,
                interval=0.02,
                message="a publisher waiting on Omnitron in its transaction",
            )
            frozen.stop(pid)
            held = stalled_item(pipeline, stall_s)
            others = {item: calls for item, calls in flow.expected_calls.items() if item != held}

            # Every other shipment reaches Omnitron while the frozen one still holds its lock...
            wait_until_final(pipeline, others, idle_in_transaction_s, "every other shipment to be final")
            assert sessions.alive(backend), "the frozen publisher's session ended before the others were done"
            assert len(collapse(pipeline.omnitron.calls_for_item(held))) == 1, (
                "the frozen publisher's shipment moved on while its cursor was locked"
            )
            # ...and once the server ends the frozen session, that shipment goes on as well.
            wait_until(
                lambda: not sessions.alive(backend),
                idle_in_transaction_s + 30,
                message="the server to end the frozen publisher's session",
            )
            wait_until_final(
                pipeline, {held: flow.expected_calls[held]}, 60, "the frozen publisher's shipment to be final"
            )
            assert publishers[pid].alive()
        # Continued, the publisher finds its session gone; its change is retried and found older.
        wait_until(
            lambda: (
                query(pipeline, "SELECT count(*) AS n FROM inbox WHERE consumer = 'omnitron-publisher'")[0]["n"]
                == query(pipeline, "SELECT count(*) AS n FROM shipment_status_changes")[0]["n"]
            ),
            60,
            message="every status change handled by a publisher",
        )
        assert_no_status_went_back(pipeline, flow)
        assert_nothing_left_over(pipeline)
    finally:
        sessions.close()


def stalled_item(pipeline, stall_s: float) -> int:
    """The order item of the stalled Omnitron call (a shipment's first call names one item)."""
    stalled = wait_until(
        lambda: [r for r in pipeline.omnitron.requests if r.ended - r.started >= stall_s * 0.9],
        stall_s + 10,
        message="the stalled call to be answered",
    )
    return int(stalled[0].path.rstrip("/").rsplit("/", 1)[1])
