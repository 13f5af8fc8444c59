"""The outbox relay: publishes stored events in order, with confirms, then deletes them.

It runs inside every service process.  On PostgreSQL one relay at a time holds a
transaction-level advisory lock, so events leave in the order they were stored (a
shipment's changes are stored in sequence order under its row lock, so they are
published in sequence order too).  A crash between publish and delete publishes an
event again with the same id, which the consumers' inboxes absorb.

A round takes a batch with one ``DELETE … RETURNING`` inside its transaction, publishes
the whole batch with streaming confirms (shared/confirms.py) and commits only once the
broker confirmed all of it; until then the rows are deleted for nobody else.
"""
from __future__ import annotations

import socket
import threading
import time
from typing import Callable

from sqlalchemy import Engine, delete, func, select

from shared.broker import connect, keep_connected
from shared.confirms import Outgoing, batch_publisher
from shared.db import is_postgres, utcnow
from shared.faults import crash_point
from shared.logging import get_logger
from shared.metrics import OUTBOX_BACKLOG, OUTBOX_OLDEST_AGE
from shared.outbox import outbox_table

_RELAY_LOCK_KEY = 0x6F6D735F6F7574  # "oms_out": one relay publishes at a time
_LOCKED_OUT_RETRY_S = 0.01


class _Refused(Exception):
    """The broker nacked part of a batch: the round rolls back, the confirmed part is deleted after."""

    def __init__(self, confirmed_ids: list[int], refused: int):
        super().__init__(f"the broker refused {refused} publishes")
        self.confirmed_ids = confirmed_ids
        self.refused = refused


class OutboxRelay:
    def __init__(
        self,
        *,
        engine: Engine,
        amqp_url: str,
        stop: threading.Event,
        batch: int = 500,
        idle_s: float = 0.1,
        after_publish: Callable[[int], None] | None = None,
    ):
        self._engine = engine
        self._url = amqp_url
        self._stop = stop
        self._batch = batch
        self._idle_s = idle_s
        self._wake = threading.Event()
        self._after_publish = after_publish
        self._log = get_logger(component="outbox-relay")
        self._backlog_observed_at = 0.0
        self._locked_out = False

    def wake(self) -> None:
        """Called after a commit that stored events, so they leave at once."""
        self._wake.set()

    def run(self) -> None:
        keep_connected(self._url, self._stop, self._session, recoverable=lambda _: (Exception,), lost=self._lost,
                       max_backoff_s=10)
        # A last round so events committed just before a stop are not left waiting.
        self._drain_on_stop()

    def _session(self, connection, connected: Callable[[], None]) -> None:
        publisher = batch_publisher(self._url, connection)
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
        self._log.warning("outbox relay interrupted", error=str(error), error_class=type(error).__name__,
                          retry_in_s=retry_in_s)

    @staticmethod
    def _keep_alive(connection) -> None:
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
            publisher = batch_publisher(self._url, connection)
            for _ in range(20):
                if self.relay_once(publisher) < self._batch:
                    break
        except Exception as exc:
            self._log.warning("final outbox round failed; events stay stored", error=str(exc))
        finally:
            connection.release()

    def _observe_backlog(self, conn) -> None:
        # A count is a scan: at most every few seconds, not every round.
        now = time.monotonic()
        if now - self._backlog_observed_at < 5:
            return
        self._backlog_observed_at = now
        count, oldest = conn.execute(select(func.count(), func.min(outbox_table.c.created_at))).one()
        OUTBOX_BACKLOG.set(count)
        OUTBOX_OLDEST_AGE.set((utcnow() - oldest).total_seconds() if oldest else 0)

    def _locked(self, conn) -> bool:
        if not is_postgres(self._engine):
            return True  # SQLite: one writer at a time anyway
        self._locked_out = not conn.execute(select(func.pg_try_advisory_xact_lock(_RELAY_LOCK_KEY))).scalar()
        return not self._locked_out

    def relay_once(self, publisher) -> int:
        try:
            with self._engine.begin() as conn:
                if not self._locked(conn):
                    return 0
                self._observe_backlog(conn)
                oldest = select(outbox_table.c.id).order_by(outbox_table.c.id).limit(self._batch)
                rows = conn.execute(
                    delete(outbox_table).where(outbox_table.c.id.in_(oldest)).returning(
                        outbox_table.c.id, outbox_table.c.event_id, outbox_table.c.event_type,
                        outbox_table.c.routing_key, outbox_table.c.body)
                ).all()
                if not rows:
                    return 0
                rows.sort(key=lambda row: row.id)
                confirmed = publisher.publish_batch([
                    Outgoing(bytes(row.body), row.routing_key, row.event_id, row.event_type) for row in rows])
                crash_point("after_publish:relay", units=len(rows))
                if not all(confirmed):
                    raise _Refused([row.id for row, ok in zip(rows, confirmed) if ok], confirmed.count(False))
        except _Refused as refused:
            self._forget(refused.confirmed_ids)
            self._log.warning("the broker refused events; they stay stored and go again", refused=refused.refused)
            self._stop.wait(1.0)
            return len(refused.confirmed_ids)
        if self._after_publish:
            self._after_publish(len(rows))
        return len(rows)

    def _forget(self, ids: list[int]) -> None:
        """Deletes the rows the broker did confirm, so only the refused ones go again."""
        if not ids:
            return
        with self._engine.begin() as conn:
            if self._locked(conn):  # else another relay has them: a repeat the inboxes absorb
                conn.execute(delete(outbox_table).where(outbox_table.c.id.in_(ids)))
