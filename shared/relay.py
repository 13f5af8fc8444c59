"""The outbox relay: publishes stored events in order, with confirms, then deletes them.

It runs inside every service process.  On PostgreSQL one relay at a time holds a
transaction-level advisory lock, so events leave in the order they were stored (a
shipment's changes are stored in sequence order under its row lock, so they are
published in sequence order too).  A crash between publish and delete publishes an
event again with the same id, which the consumers' inboxes absorb.

A round takes a batch with one ``DELETE … RETURNING`` inside its transaction, publishes
the whole batch with streaming confirms (shared/confirms.py) and commits only once the
broker confirmed all of it; until then the rows are deleted for nobody else.  A frozen
relay cannot keep the lock: its transaction's idle-in-transaction timeout (``hold_s``
plus a margin) makes the server end its session, and the next process's relay goes on.

Every publish is ``mandatory``.  An event the broker nacked or returned (no queue bound
for its routing key) is put back in the same transaction, under its own id, so it keeps
its place and goes again next round; so are the later events of its subject (the
CloudEvents ``subject``: one package, one shipment) in the batch, which therefore goes
out in waves, one event per subject each (order between subjects is not kept, and
need not be).
"""

from __future__ import annotations

import json
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, cast

from sqlalchemy import Connection, Engine, Row, bindparam, delete, func, insert, select, text

from shared import tracing
from shared.broker import connect, keep_connected
from shared.confirms import Outgoing, batch_publisher
from shared.db import is_postgres, milliseconds, utcnow
from shared.failure import describe
from shared.faults import crash_point
from shared.logging import get_logger
from shared.metrics import OUTBOX_BACKLOG, OUTBOX_OLDEST_AGE, OUTBOX_RETURNED
from shared.outbox import outbox_table

if TYPE_CHECKING:
    from shared.confirms import PlainPublisher, StreamingPublisher

_RELAY_LOCK_KEY = 0x6F6D735F6F7574  # "oms_out": one relay publishes at a time
_LOCKED_OUT_RETRY_S = 0.01
# The lock, and this round's idle-in-transaction timeout, in one round trip.
_LOCK_FOR_A_ROUND = text(
    "SELECT set_config('idle_in_transaction_session_timeout', :idle, true), pg_try_advisory_xact_lock(:key)"
)
#: The server ends a round's session this long after the confirm wait (``hold_s``) would have given up.
_IDLE_MARGIN_S = 5.0
_COLUMNS = (
    outbox_table.c.id,
    outbox_table.c.event_id,
    outbox_table.c.event_type,
    outbox_table.c.routing_key,
    outbox_table.c.body,
    outbox_table.c.created_at,
)

# The oldest events taken out of the outbox, built once (a statement built per round costs
# its cache-key walk every round).
_TAKE_OLDEST = (
    delete(outbox_table)
    .where(outbox_table.c.id.in_(select(outbox_table.c.id).order_by(outbox_table.c.id).limit(bindparam("limit"))))
    .returning(*_COLUMNS)
)
_PUT_BACK = insert(outbox_table)
_BACKLOG = select(func.count(), func.min(outbox_table.c.created_at))


_SUBJECT = b'"subject":'
_decode_json = json.JSONDecoder().raw_decode
#: At most this many batches' worth of events held back (returned, or behind a returned
#: one) are taken again with each round, besides a full batch of others.
_HELD_BATCHES = 10
_RETURN_LOG_EVERY_S = 30.0


def ordering_key(body: bytes) -> str | None:
    """The CloudEvents ``subject`` of a stored event: the events of one subject leave in order.

    The body is our own (stored by the unit of work, ``subject`` before ``data``): the
    first ``"subject":`` key is the envelope's, read as one JSON string without parsing
    the whole event (a full parse would cost the relay several times its publishing).
    """
    at = body.find(_SUBJECT)
    if at < 0:
        return None
    try:
        value, _ = _decode_json(body[at + len(_SUBJECT) :].decode("utf-8", "replace"))
    except ValueError:
        return None
    return value if isinstance(value, str) else None


def in_waves(keys: list[str | None]) -> list[list[int]]:
    """Indices of a batch's events (by their ordering keys) in publishing waves: wave n holds each subject's n-th event of the batch.

    A wave is confirmed before the next is written, so an event the broker returned is
    known before its subject's next event would go out. Most batches are one wave.
    """
    waves: list[list[int]] = []
    seen: dict[str, int] = {}
    for index, key in enumerate(keys):
        nth = 0
        if key is not None:
            nth = seen.get(key, 0)
            seen[key] = nth + 1
        if nth == len(waves):
            waves.append([])
        waves[nth].append(index)
    return waves


class _ReturnLog:
    """A returned event goes again every round: logged when first returned, then every half minute."""

    def __init__(self, every_s: float = _RETURN_LOG_EVERY_S):
        self._every_s = every_s
        self._logged: dict[str, float] = {}

    def due(self, event_id: str) -> bool:
        now = time.monotonic()
        if len(self._logged) > 10_000:
            self._logged = {e: at for e, at in self._logged.items() if now - at < self._every_s}
        if now - self._logged.get(event_id, -self._every_s) < self._every_s:
            return False
        self._logged[event_id] = now
        return True


class OutboxRelay:
    def __init__(
        self,
        *,
        engine: Engine,
        amqp_url: str,
        stop: threading.Event,
        batch: int = 500,
        idle_s: float = 0.1,
        hold_s: float = 15.0,
        after_publish: Callable[[int], None] | None = None,
    ):
        self._engine = engine
        self._url = amqp_url
        self._stop = stop
        self._batch = batch
        self._idle_s = idle_s
        self._hold_s = hold_s
        self._held_before = 0  # events put back last round: taken again besides a full batch
        self._return_log = _ReturnLog()
        self._wake = threading.Event()
        self._after_publish = after_publish
        self._log = get_logger(component="outbox-relay")
        self._backlog_observed_at = 0.0
        self._locked_out = False

    def wake(self) -> None:
        """Called after a commit that stored events, so they leave at once."""
        self._wake.set()

    def run(self) -> None:
        keep_connected(
            self._url, self._stop, self._session, recoverable=lambda _: (Exception,), lost=self._lost, max_backoff_s=10
        )
        # A last round so events committed just before a stop are not left waiting.
        self._drain_on_stop()

    def _session(self, connection: Any, connected: Callable[[], None]) -> None:
        publisher = batch_publisher(self._url, connection, timeout_s=self._hold_s)
        connected()
        while not self._stop.is_set():
            woken = self._wake.is_set()
            self._wake.clear()
            published = self.relay_once(publisher)
            if self._locked_out and woken:
                # Another process's relay holds the lock, and may have looked
                # before our events were committed: look again soon, not idly.
                self._wake.set()
                self._stop.wait(_LOCKED_OUT_RETRY_S)
            elif published < self._batch:
                self._wake.wait(self._idle_s)
                self._keep_alive(connection)

    def _lost(self, error: BaseException, retry_in_s: float) -> None:  # broker or database away
        self._log.warning(
            "outbox relay interrupted", error=describe(error), error_class=type(error).__name__, retry_in_s=retry_in_s
        )

    @staticmethod
    def _keep_alive(connection: Any) -> None:
        # An idle relay neither reads nor writes: it reads the broker's heartbeats and
        # sends its own, or one side would close the connection as dead.
        try:
            connection.drain_events(timeout=0)
        except socket.timeout:
            pass
        connection.heartbeat_check()

    def _drain_on_stop(self) -> None:
        connection = connect(self._url)
        try:
            publisher = batch_publisher(self._url, connection, timeout_s=self._hold_s)
            for _ in range(20):
                if self.relay_once(publisher) < self._batch:
                    break
        except Exception as exc:
            self._log.warning("final outbox round failed; events stay stored", error=str(exc))
        finally:
            connection.release()  # type: ignore[no-untyped-call]  # kombu's, unannotated

    def _observe_backlog(self, conn: Connection) -> None:
        # A count is a scan: at most every few seconds, not every round.
        now = time.monotonic()
        if now - self._backlog_observed_at < 5:
            return
        self._backlog_observed_at = now
        count, oldest = conn.execute(_BACKLOG).one()
        OUTBOX_BACKLOG.set(count)
        OUTBOX_OLDEST_AGE.set((utcnow() - oldest).total_seconds() if oldest else 0)

    def _locked(self, conn: Connection) -> bool:
        """This round's turn to publish; on PostgreSQL also bounds how long the round may leave
        its transaction idle (waiting on the broker) before the server ends it, freeing the lock."""
        if not is_postgres(self._engine):
            return True  # SQLite: one writer at a time anyway
        self._locked_out = not conn.execute(
            _LOCK_FOR_A_ROUND, {"key": _RELAY_LOCK_KEY, "idle": f"{milliseconds(self._hold_s + _IDLE_MARGIN_S)}ms"}
        ).one()[1]
        return not self._locked_out

    def relay_once(self, publisher: StreamingPublisher | PlainPublisher) -> int:
        """One round: the oldest events (and those held back before) published; how many were taken."""
        with self._engine.begin() as conn:
            if not self._locked(conn):
                return 0
            self._observe_backlog(conn)
            rows = cast(
                "list[Row[Any]]",  # all() hands back a list
                conn.execute(_TAKE_OLDEST, {"limit": self._batch + self._held_before}).all(),
            )
            if not rows:
                self._held_before = 0
                return 0
            rows.sort(key=lambda row: row.id)
            outcome = self._publish(publisher, rows)
            crash_point("after_publish:relay", units=len(rows))
            if outcome.held:
                # Put back as they were, same ids: they keep their place before later events.
                conn.execute(_PUT_BACK, [row._asdict() for row in outcome.held])
        self._held_before = min(len(outcome.held), _HELD_BATCHES * self._batch)
        self._report(outcome)
        if outcome.sent and self._after_publish:
            self._after_publish(len(outcome.sent))
        if outcome.refused:
            self._stop.wait(1.0)  # the broker is in trouble: not at once again
        return len(outcome.sent)

    @staticmethod
    def _publish(publisher: StreamingPublisher | PlainPublisher, rows: list[Row[Any]]) -> "_Round":
        """Publishes the rows wave by wave; a subject whose event was not taken has its later ones held."""
        bodies = [bytes(row.body) for row in rows]
        keys = [ordering_key(body) for body in bodies]
        outcome = _Round()
        blocked: set[str] = set()
        for wave in in_waves(keys):
            ready = wave
            if blocked:
                ready = [i for i in wave if keys[i] not in blocked]
                outcome.held.extend(rows[i] for i in wave if keys[i] in blocked)
                outcome.behind += len(wave) - len(ready)
            if not ready:
                continue
            taken = tracing.traced_publish(
                publisher.publish_batch,
                [
                    Outgoing(
                        bodies[i],
                        rows[i].routing_key,
                        rows[i].event_id,
                        rows[i].event_type,
                        tracing.message_headers(bodies[i]),
                    )
                    for i in ready
                ],
            )
            for position, (index, ok) in enumerate(zip(ready, taken)):
                if ok:
                    outcome.sent.append(rows[index])
                    continue
                outcome.held.append(rows[index])
                if keys[index] is not None:
                    blocked.add(cast(str, keys[index]))  # not None, just checked
                if position in taken.returned:
                    outcome.returned.append((rows[index], taken.returned[position]))
                else:
                    outcome.refused += 1
        return outcome

    def _report(self, outcome: "_Round") -> None:
        for row, reason in outcome.returned:
            OUTBOX_RETURNED.labels(row.routing_key).inc()
            if self._return_log.due(row.event_id):
                self._log.warning(
                    "the broker returned an event: no queue is bound for it; it stays stored, goes "
                    "again each round, and its subject's later events wait behind it",
                    event_id=row.event_id,
                    event_type=row.event_type,
                    routing_key=row.routing_key,
                    reason=reason,
                    waiting_behind=outcome.behind,
                )
        if outcome.refused:
            self._log.warning("the broker refused events; they stay stored and go again", refused=outcome.refused)


@dataclass
class _Round:
    sent: list[Row[Any]] = field(default_factory=list)  # rows the broker took: deleted
    held: list[Row[Any]] = field(default_factory=list)  # rows put back: refused, returned, or behind one of those
    returned: list[tuple[Row[Any], str]] = field(default_factory=list)  # (row, the broker's reason)
    refused: int = 0  # nacked
    behind: int = 0  # held only because an earlier event of their subject was not taken
