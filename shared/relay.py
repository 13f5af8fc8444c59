"""The outbox relay: publishes stored events in order, with confirms, then deletes them.

It runs inside every service process.  On PostgreSQL one relay at a time holds a
transaction-level advisory lock, so events leave in the order they were stored (a
shipment's changes are stored in sequence order under its row lock, so they are
published in sequence order too).  A crash between publish and delete publishes an
event again with the same id, which the consumers' inboxes absorb.
"""
from __future__ import annotations

import threading
import time
from typing import Callable

from sqlalchemy import Engine, delete, func, select

from shared.broker import Publisher, connect
from shared.db import is_postgres, utcnow
from shared.faults import crash_point
from shared.logging import get_logger
from shared.metrics import OUTBOX_BACKLOG, OUTBOX_OLDEST_AGE
from shared.outbox import outbox_table

_RELAY_LOCK_KEY = 0x6F6D735F6F7574  # "oms_out": one relay publishes at a time


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

    def wake(self) -> None:
        """Called after a commit that stored events, so they leave at once."""
        self._wake.set()

    def run(self) -> None:
        backoff = 0.5
        while not self._stop.is_set():
            connection = connect(self._url)
            try:
                connection.ensure_connection(max_retries=1)
                publisher = Publisher(connection)
                backoff = 0.5
                while not self._stop.is_set():
                    published = self.relay_once(publisher)
                    if published < self._batch:
                        self._wake.wait(self._idle_s)
                        self._wake.clear()
            except Exception as exc:  # broker or database away: wait and start over
                self._log.warning("outbox relay interrupted", error=str(exc), error_class=type(exc).__name__, retry_in_s=backoff)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 10)
            finally:
                try:
                    connection.release()
                except Exception:
                    pass
        # A last round so events committed just before a stop are not left waiting.
        self._drain_on_stop()

    def _drain_on_stop(self) -> None:
        connection = connect(self._url)
        try:
            publisher = Publisher(connection)
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

    def relay_once(self, publisher: Publisher) -> int:
        with self._engine.begin() as conn:
            if is_postgres(self._engine):
                if not conn.execute(select(func.pg_try_advisory_xact_lock(_RELAY_LOCK_KEY))).scalar():
                    return 0
            self._observe_backlog(conn)
            rows = conn.execute(
                select(outbox_table.c.id, outbox_table.c.event_id, outbox_table.c.event_type,
                       outbox_table.c.routing_key, outbox_table.c.body)
                .order_by(outbox_table.c.id)
                .limit(self._batch)
            ).all()
            if not rows:
                return 0
            for row in rows:
                publisher.publish(
                    bytes(row.body), routing_key=row.routing_key, message_id=row.event_id, event_type=row.event_type
                )
            crash_point("after_publish:relay")
            conn.execute(delete(outbox_table).where(outbox_table.c.id.in_([row.id for row in rows])))
        if self._after_publish:
            self._after_publish(len(rows))
        return len(rows)
