"""Batches: the units of work of many deliveries in one database transaction, one commit.

A batching queue worker hands the deliveries that arrived (up to its batch size) to
:func:`run_batch`, which applies them in one transaction, in one of two ways:

- staged (the fast path, when the service provides a staging area): each unit of work
  stages its rows instead of writing them, and its questions to the database get the
  answer they almost always get ("first time"), noted as expectations.  After the last
  handler the staged rows go out as one multi-row statement per table; if everything
  came out as expected, the transaction commits.  Any surprise — a duplicate, a row the
  database refuses, a question staging cannot answer — throws the attempt away
  (:class:`Replay`) and the batch is applied again the careful way.
- careful: each unit of work is a SAVEPOINT in the batch's transaction (see
  ``services/domain/uow.py``); a failing handler rolls back to its savepoint only.

Either way a poison message fails alone while the others commit together, and the
worker acks the applied deliveries only after the one real commit; if that commit fails,
nothing of the batch was applied and none of them is acked.

Only services whose handlers have no effect outside the database batch: a crash before
the commit repeats the whole batch, and an HTTP call inside a batch would be repeated
for every delivery in it (and would hold the batch's row locks while it waits).
"""

from __future__ import annotations

import time
from collections import Counter
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Callable, Protocol, Sequence

from sqlalchemy import Connection, Engine, RootTransaction

from shared.failure import TransientError, describe
from shared.faults import crash_point
from shared.logging import get_logger

log = get_logger(component="batch")


class BatchAbandoned(TransientError):
    """The batch's transaction broke before this delivery's turn: it was not attempted."""

    exhausts = False  # never the message's fault
    error_class = "BatchAbandoned"


class Replay(Exception):
    """The staged attempt cannot apply this batch as it stands: apply it the careful way."""


class Staging(Protocol):
    """A batch's staged rows, written by :meth:`flush` (which raises :class:`Replay` on a surprise)."""

    def flush(self, connection: Connection) -> None: ...


@dataclass(frozen=True)
class Handled:
    """How one delivery's handling ended: the error it raised, if any, and how long it took."""

    error: BaseException | None
    elapsed_s: float


class Batch:
    """The open transaction units of work join, and what to do once it has committed."""

    def __init__(self, engine: Engine, connection: Connection, staging: Staging | None = None):
        self.engine = engine
        self.connection = connection
        self.staging = staging
        self._committed: list[str] = []
        self._after_commit: list[Callable[[], None]] = []

    def unit_committed(self, consumer: str, after_commit: Callable[[], None] | None) -> None:
        """A unit released its savepoint (or handed over its staged rows): applied when the batch commits."""
        self._committed.append(consumer)
        if after_commit is not None and all(hook is not after_commit for hook in self._after_commit):
            self._after_commit.append(after_commit)

    def _on_commit(self) -> None:
        # Crash points count units, as without batches: the n-th unit applied kills the
        # process right after the real commit that applied it, before any ack.
        for consumer, units in Counter(self._committed).items():
            crash_point(f"after_commit:{consumer}", units=units)
        for hook in self._after_commit:
            hook()


_current: ContextVar[Batch | None] = ContextVar("oms_batch", default=None)


def current(engine: Engine) -> Batch | None:
    """The batch a unit of work on ``engine`` joins, if its handler runs inside one."""
    batch = _current.get()
    return batch if batch is not None and batch.engine is engine else None


def _handle_each(
    batch: Batch,
    transaction: RootTransaction,
    handle: Callable[[object], None],
    deliveries: Sequence[object],
    staged: bool,
) -> list[Handled]:
    outcomes: list[Handled] = []
    token = _current.set(batch)
    try:
        for delivery in deliveries:
            if batch.connection.invalidated or not transaction.is_active:
                # The connection died under a unit: the rest were never tried.
                outcomes.append(Handled(BatchAbandoned("the batch's database transaction broke"), 0.0))
                continue
            started = time.perf_counter()
            try:
                handle(delivery)
                error: BaseException | None = None
            except Replay as exc:
                if staged:
                    raise
                error = exc  # only staged repositories replay; here it is a bug like any other
            except BaseException as exc:  # a handler's failure is data for the policy
                error = exc
            outcomes.append(Handled(error, time.perf_counter() - started))
    finally:
        _current.reset(token)
    return outcomes


def _staged(
    engine: Engine, handle: Callable[[object], None], deliveries: Sequence[object], staging: Staging
) -> list[Handled] | None:
    """The fast path; None when the batch has to be applied the careful way."""
    with engine.connect() as connection:
        transaction = connection.begin()
        batch = Batch(engine, connection, staging)
        try:
            outcomes = _handle_each(batch, transaction, handle, deliveries, staged=True)
            staging.flush(connection)
            transaction.commit()
        except Replay as surprise:
            log.info("batch applied unit by unit", size=len(deliveries), reason=str(surprise))
            return None
        except Exception as exc:  # a staged row refused, or the database away: let each unit find out
            log.info("batch applied unit by unit", size=len(deliveries), reason=describe(exc))
            return None
    batch._on_commit()
    return outcomes


def _careful(engine: Engine, handle: Callable[[object], None], deliveries: Sequence[object]) -> list[Handled]:
    with engine.connect() as connection:
        transaction = connection.begin()
        batch = Batch(engine, connection)
        outcomes = _handle_each(batch, transaction, handle, deliveries, staged=False)
        try:
            transaction.commit()
        except Exception as exc:
            # Nothing was applied: the deliveries that had succeeded fail with the commit.
            return [o if o.error is not None else Handled(exc, o.elapsed_s) for o in outcomes]
    batch._on_commit()
    return outcomes


def run_batch(
    engine: Engine,
    handle: Callable[[object], None],
    deliveries: Sequence[object],
    staging: Callable[[], Staging] | None = None,
) -> list[Handled]:
    """Runs ``handle`` for each delivery inside one transaction; one outcome per delivery."""
    if staging is not None:
        outcomes = _staged(engine, handle, deliveries, staging())
        if outcomes is not None:
            return outcomes
    return _careful(engine, handle, deliveries)
